"""Image + label-mask pairs on disk (PASCAL VOC, ADE20K): reading, checking and the joint transform.

A mask is a PNG of class indices (palette or grayscale). Each format says which stored values are classes and which
one is "ignore"; a stored value that is neither is an error naming the file, never a silent wrong label.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from ..errors import UserError
from .images import try_read_rgb

log = logging.getLogger(__name__)


class DatasetError(UserError):
    """A data set whose content contradicts its format (wrong labels, mismatched sizes, missing files)."""

    def __init__(self, message: str) -> None:
        # A DataLoader worker's error comes back as DatasetError("Caught ... Original Traceback ...: <ours>"):
        # keep only our one-line message, which names the file, for the CLI.
        if message.startswith("Caught DatasetError") and f"{type(self).__name__}: " in message:
            message = message.rstrip().rsplit(f"{type(self).__name__}: ", 1)[1]
        super().__init__(message)


@dataclass(frozen=True)
class MaskFormat:
    """How a data set stores labels. Targets are `stored - label_offset`; `stored_ignore` marks unlabelled pixels
    and is also the fill value of padding and rotation, so that augmentation never invents a class."""
    name: str
    num_classes: int
    stored_ignore: int          # VOC: 255 (object boundaries); ADE20K: 0 ("other")
    label_offset: int = 0       # ADE20K: 1 (the official loader subtracts 1, so 0 becomes the ignore value -1)

    @property
    def ignore_index(self) -> int:
        return self.stored_ignore - self.label_offset

    def check(self, mask: np.ndarray, path: Path) -> None:
        lo, hi = self.label_offset, self.label_offset + self.num_classes
        values = np.unique(mask)
        bad = [int(v) for v in values if not (lo <= v < hi or v == self.stored_ignore)]
        if bad:
            raise DatasetError(f"{path}: mask values {bad[:8]} are not {self.name} labels (expected {lo}..{hi - 1} "
                               f"or {self.stored_ignore} = ignore); is --data the right data set for this model?")


# (image, mask uint8, (height, width) of the training crop or None) -> (image float [3, h, w], mask [h, w])
PairTransform = Callable[[tv_tensors.Image, tv_tensors.Mask, "tuple[int, int] | None"], tuple]


def read_image(path: Path) -> tv_tensors.Image | None:
    """RGB uint8 [3, H, W] as a viewer shows it (`data.images`), or None (logged) for a file that cannot be read."""
    im = try_read_rgb(path)
    return None if im is None else tv_tensors.Image(F.pil_to_tensor(im))


def read_mask(path: Path, fmt: MaskFormat) -> tv_tensors.Mask | None:
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L"):
                raise DatasetError(f"{path}: mask mode {im.mode}; expected a palette or grayscale PNG of class "
                                   "indices (colour-coded masks must be converted first)")
            mask = np.array(im)
    except (UnidentifiedImageError, OSError) as e:
        log.warning("skipping unreadable mask %s (%s)", path, e)
        return None
    fmt.check(mask, path)
    return tv_tensors.Mask(torch.from_numpy(mask))


class MaskPairs(Dataset):
    """(image, mask) file pairs. Index with an int (evaluation) or `(index, height, width)` (the training sampler).

    Returns `(image, target)` after `transform`, with `target` an int64 mask whose ignored pixels are
    `fmt.ignore_index`; `None` for a pair whose files cannot be decoded (the collate drops and counts it).
    """

    def __init__(self, pairs: list[tuple[Path, Path]], fmt: MaskFormat, *, transform: PairTransform | None = None,
                 where: str = "") -> None:
        if not pairs:
            raise DatasetError(f"{where or fmt.name}: no images listed")
        missing = [str(p) for pair in pairs for p in pair if not p.is_file()]
        if missing:
            raise DatasetError(f"{where or fmt.name}: {len(missing)} listed file(s) missing, e.g. {missing[0]}")
        self.pairs, self.fmt, self.transform = pairs, fmt, transform

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask] | None:
        image_path, mask_path = self.pairs[index]
        image, mask = read_image(image_path), read_mask(mask_path, self.fmt)
        if image is None or mask is None:
            return None
        if tuple(image.shape[-2:]) != tuple(mask.shape):
            raise DatasetError(f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but image {image_path} is "
                               f"{image.shape[-1]}x{image.shape[-2]} (width x height)")
        return image, mask

    def __getitem__(self, key: int | tuple[int, int, int]):
        index, size = (key[0], tuple(key[1:])) if isinstance(key, tuple) else (key, None)
        sample = self.load(index)
        if sample is None:
            return None
        image, mask = self.transform(*sample, size) if self.transform else (sample[0], sample[1])
        return image, mask.as_subclass(torch.Tensor).long() - self.fmt.label_offset
