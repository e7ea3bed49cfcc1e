"""Classification data sets: an ImageFolder root (`train/<class>/*.jpg`, `val/<class>/*.jpg`) and the embedded
`digits` (scikit-learn's 1,797 real 8x8 handwritten digits, upscaled to 64x64 RGB, fixed seeded 80/20 split).

Samples come back as `(image tensor, class index)`, or None for a file that cannot be decoded, so that a bad file
in a DataLoader worker is counted and dropped by the task's collate instead of killing the run with a traceback.
The training set takes `(index, height, width)` keys from the batch sampler (crop size per step).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes

from ..errors import UserError
from .images import try_read_bgr, try_read_rgb
from .sampler import unpack
from .transforms import Pipeline, eval_transform, train_transform

log = logging.getLogger(__name__)
DIGITS_SIZE = 64
MAX_SUBSTITUTES = 8


class ClassificationSet(Dataset):
    """Images (paths or an in-memory uint8 tensor) with labels, transformed per requested crop size."""

    def __init__(self, items: list[tuple[str, int]] | tuple[Tensor, Tensor], classes: list[str], pipe: Pipeline,
                 *, train: bool, size: int) -> None:
        self.items, self.classes, self.pipe, self.train, self.size = items, classes, pipe, train, size
        self.num_classes = len(classes)

    def __len__(self) -> int:
        return len(self.items[1]) if isinstance(self.items, tuple) else len(self.items)

    def _raw(self, index: int) -> tuple[Image.Image | Tensor | None, int]:
        if isinstance(self.items, tuple):
            return self.items[0][index], int(self.items[1][index])
        path, label = self.items[index]
        if self.pipe.backend == "opencv":   # the v1 pipeline works on OpenCV's BGR arrays
            return try_read_bgr(path), label
        return try_read_rgb(path), label

    def __getitem__(self, key: int | tuple[int, int, int]) -> tuple[Tensor, int, int] | None:
        """`(image, label, unreadable files met)`. Training replaces an unreadable file by the next readable one,
        so batches keep the size DDP and the sampler rely on; evaluation returns None (dropped, counted)."""
        index, h, w = unpack(key, self.size)
        for attempt in range(MAX_SUBSTITUTES if self.train else 1):
            image, label = self._raw((index + attempt) % len(self))
            if image is not None:
                return self._transform(h, w)(image), label, attempt
        return None

    def _transform(self, h: int, w: int) -> Callable:
        return _cached_transform(self.pipe, (h, w) if self.train else None)


@lru_cache(maxsize=64)
def _cached_transform(pipe: Pipeline, size: tuple[int, int] | None) -> Callable:
    return train_transform(pipe, size) if size is not None else eval_transform(pipe)


def digits(pipe: Pipeline, *, image_size: int, train: bool = True) -> tuple[Dataset | None, Dataset]:
    """The embedded default data set; 1,437 train / 360 val images, stratified, seed 0 (the same on every run)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    bunch = load_digits()
    images = torch.from_numpy(bunch.images).float().div(16).mul(255)          # [N, 8, 8], ink in 0..16
    images = torch.nn.functional.interpolate(images[:, None], size=DIGITS_SIZE, mode="bicubic", align_corners=False)
    images = images.clamp(0, 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()  # -> [N, 3, 64, 64]
    labels = torch.from_numpy(bunch.target)
    train_idx, val_idx = train_test_split(range(len(labels)), test_size=0.2, random_state=0, stratify=bunch.target)
    classes = [str(c) for c in bunch.target_names]
    val = ClassificationSet((images[val_idx], labels[val_idx]), classes, pipe, train=False, size=image_size)
    if not train:
        return None, val
    return ClassificationSet((images[train_idx], labels[train_idx]), classes, pipe, train=True, size=image_size), val


def _split_dir(root: Path, split: str) -> Path:
    sub = root / split
    if sub.is_dir():
        return sub
    if split == "val" and any(p.is_dir() for p in root.iterdir()) and not (root / "train").is_dir():
        return root                                   # eval on a plain folder of class folders
    raise UserError(f"{root}: expected a {split}/ folder of class folders (ImageFolder layout: "
                    f"{root}/{split}/<class>/<image>)")


def _image_files(folder: Path, entered: set[str], found: set[str]) -> list[str]:
    """Image files under `folder` in torchvision's order (sorted folders, sorted names), following symbolic links
    but entering each real directory and taking each real file once (`entered`, `found`: real paths, shared by a
    split's classes): a link back to a parent folder, or two links to one folder, add nothing."""
    walked = []
    for root, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in entered:
            dirs[:] = []
            continue
        entered.add(real)
        dirs[:] = [d for d in dirs if os.path.realpath(os.path.join(root, d)) not in entered]
        walked.append((root, names))
    files = []
    for root, names in sorted(walked):
        for name in sorted(names):
            path = os.path.join(root, name)
            real = os.path.realpath(path)
            if name.lower().endswith(IMG_EXTENSIONS) and real not in found and os.path.isfile(real):
                found.add(real)
                files.append(path)
    return files


def _folder_items(folder: Path, class_to_idx: dict[str, int]) -> list[tuple[str, int]]:
    entered: set[str] = {os.path.realpath(folder)}
    found: set[str] = set()
    items = [(path, class_to_idx[c]) for c in sorted(class_to_idx) if (folder / c).is_dir()
             for path in _image_files(folder / c, entered, found)]
    if not items:
        raise UserError(f"{folder}: no images found (extensions: {', '.join(IMG_EXTENSIONS)})")
    counts = {c: 0 for c in class_to_idx}
    names = {i: c for c, i in class_to_idx.items()}
    for _, label in items:
        counts[names[label]] += 1
    empty = [c for c, n in counts.items() if n == 0 and (folder / c).is_dir()]
    if empty:
        log.warning("%s: %d class folder(s) without images, kept so class indices match: %s", folder, len(empty),
                    ", ".join(empty[:5]) + (", ..." if len(empty) > 5 else ""))
    return items


def image_folder(root: str, pipe: Pipeline, *, image_size: int, train: bool = True,
                 classes: list[str] | None = None) -> tuple[Dataset | None, Dataset]:
    """ImageFolder with train/ and val/ sharing train/'s class indices (sorted folder names, as torchvision)."""
    path = Path(root)
    if not path.is_dir():
        raise UserError(f"data directory not found: {root}")
    first = _split_dir(path, "train" if train else "val")
    if classes is None:
        try:
            classes, _ = find_classes(first)
        except FileNotFoundError:
            raise UserError(f"{first}: no class folders found (ImageFolder layout: {first}/<class>/<image>)") from None
    class_to_idx = {c: i for i, c in enumerate(classes)}
    val_dir = _split_dir(path, "val")
    unknown = sorted({p.name for p in val_dir.iterdir() if p.is_dir()} - set(classes))
    if unknown:
        raise UserError(f"{val_dir}: class folder(s) not in the training classes: {', '.join(unknown[:5])}")
    val = ClassificationSet(_folder_items(val_dir, class_to_idx), classes, pipe, train=False, size=image_size)
    if not train:
        return None, val
    return ClassificationSet(_folder_items(first, class_to_idx), classes, pipe, train=True, size=image_size), val
