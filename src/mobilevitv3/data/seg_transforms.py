"""Joint image/mask augmentation and the evaluation inputs of the official segmentation recipes (training.md §9).

v2-based recipes (VOC and ADE20K): random shorter side in [256, 768] with the long side capped at 1024 (PIL
bicubic), flip, 512x512 crop padded with the ignore value and redrawn up to 10 times by the official class-ratio
rule, Gaussian blur (p 0.5, sigma U(0, 1)), SSD-style photometric distortion, rotation U(-10, 10) degrees.
v1-based recipe (VOC): shorter side in [256, 1024] (OpenCV bilinear, no antialias), crop 512 after enlarging a
too-small image instead of padding it, flip; nothing else. Masks are resized with nearest neighbour.
Evaluation (`official_eval_transform`): v1 512x512 by OpenCV; v2 shorter side 512 (PIL bicubic) floored to the
output stride; training-time validation scores image and mask at 512x512. Output: float [3, h, w] in [0, 1] in
the model's channel order, and the uint8 mask.

Where torchvision's transforms differ from the official ones:
- `class_ratio_crop`: the v2 crop's class-ratio rule. The histogram drops only the value 255 (so ADE20K's stored
  0 "other" counts as a class); a window without valid pixels is re-checked instead of redrawn; up to 10 repeats
  after the first window, the last one drawn is kept unchecked.
- `v2_eval_sizes` / `pil_resize`: the v2 evaluation input: shorter side 512 (aspect kept, long side truncated)
  with PIL's bicubic, then floored to a multiple of the output stride (bilinear, align_corners True).
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ..errors import UserError
from .cv_transforms import CvSegEvalTransform, cv_resize, short_side_size

Resizer = Literal["opencv", "pil", "torch"]
A = TypeVar("A")

# task_options keys that are not augmentation: the data set kind, the class names a checkpoint carries, and the
# settings of the embedded scene set (`data.scenes.scene_spec`)
NOT_AUGMENTATION = ("dataset", "classes", "scenes")


@dataclass(frozen=True)
class SegAugment:
    """The training augmentation of a segmentation recipe: `task_options` in the YAML (flip: `hflip`)."""
    short_side: tuple[int, int] = (256, 768)    # shorter side drawn uniformly from this inclusive range
    max_long_side: int | None = 1024            # cap on the longer side after that resize (None: no cap)
    pad_crop: bool = True                       # pad an image smaller than the crop (False: enlarge it, v1 recipe)
    cat_max_ratio: float = 0.75                 # retry crops where one class covers more (1.0: off)
    crop_tries: int = 10
    blur: float = 0.5                           # probability of a Gaussian blur
    blur_sigma: float = 1.0                     # sigma ~ U(0, blur_sigma)
    photometric: float = 0.5                    # probability of each photometric step (0: off)
    rotate: float = 10.0                        # degrees; 0: off

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> SegAugment:
        return augment_from_options(cls, options, "segmentation")


def augment_from_options(cls: type[A], options: dict[str, Any], task: str) -> A:
    """A task's augmentation dataclass from a recipe's `task_options` (the keys of `NOT_AUGMENTATION` left out;
    YAML lists become tuples); an unknown key is a `UserError` naming the close matches."""
    known = [f.name for f in dataclasses.fields(cls)]
    options = {k: v for k, v in options.items() if k not in NOT_AUGMENTATION}
    for key in options:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=2)
            raise UserError(f"task_options: unknown {task} option {key!r}"
                            f"{'; did you mean ' + ', '.join(close) + '?' if close else ''}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})


RATIO_IGNORE = 255   # the official `ignore_idx` of the rule, for VOC and ADE20K alike


def _window(height: int, width: int, size: tuple[int, int]) -> tuple[int, int]:
    return int(torch.randint(height - size[0] + 1, ())), int(torch.randint(width - size[1] + 1, ()))


def _accept(window: Tensor, max_ratio: float) -> bool | None:
    """True/False for the rule, None when the window has no valid pixel (re-checked, not redrawn)."""
    values, counts = torch.unique(window, return_counts=True)
    valid = counts[values != RATIO_IGNORE]
    if valid.numel() == 0:
        return None
    return len(values) > 1 and int(valid.max()) < max_ratio * int(valid.sum())


def class_ratio_crop(mask: Tensor, size: tuple[int, int], *, max_ratio: float = 0.75, repeats: int = 10
                     ) -> tuple[int, int]:
    """(top, left) of the official v2 random crop of `size` from a [H, W] stored mask at least that large."""
    height, width = mask.shape[-2:]
    top, left = _window(height, width, size)
    if max_ratio >= 1.0:
        return top, left
    for _ in range(repeats):
        verdict = _accept(mask[..., top:top + size[0], left:left + size[1]], max_ratio)
        if verdict:
            break
        if verdict is False:
            top, left = _window(height, width, size)
    return top, left


def v2_eval_sizes(height: int, width: int, *, short: int = 512, stride: int = 16
                  ) -> tuple[tuple[int, int], tuple[int, int]]:
    """((h, w) after the bicubic short-side resize, (h, w) floored to multiples of `stride`)."""
    h, w = short_side_size(height, width, short)
    return (h, w), (h // stride * stride, w // stride * stride)


def pil_resize(image: Tensor, size: tuple[int, int], *, resample: int = Image.BICUBIC) -> Tensor:
    """A [3, H, W] uint8 tensor resized by PIL itself (torchvision's tensor bicubic only approximates it)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    out = np.asarray(pil.resize((size[1], size[0]), resample=resample))
    return torch.from_numpy(out.copy()).permute(2, 0, 1)


def pil_resize_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """A [H, W] uint8 mask resized by PIL's nearest neighbour (what the v2 pipelines use for masks)."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    out = np.asarray(Image.fromarray(mask.numpy()).resize((size[1], size[0]), resample=Image.NEAREST))
    return torch.from_numpy(out.copy())


@dataclass(frozen=True)
class PilSegEvalTransform:
    """v2-family segmentation input on an (RGB uint8 image, uint8 mask) pair.

    `resize_mask` (training-time validation): image and mask to exactly `size` (bicubic / nearest), scored there.
    Otherwise (the evaluation protocol): shorter side `size[0]` with the aspect kept (bicubic), floored to a
    multiple of `stride` (bilinear, align_corners True); the mask stays at the original size."""
    size: tuple[int, int] = (512, 512)
    stride: int = 16
    resize_mask: bool = False
    flip_channels: bool = False

    def __call__(self, image: Tensor, mask: Tensor | None, size: tuple[int, int] | None = None):
        image = image.as_subclass(Tensor)
        if self.resize_mask:
            x = pil_resize(image, tuple(self.size)).float().div_(255)
            if mask is not None:
                mask = pil_resize_mask(mask.as_subclass(Tensor), tuple(self.size))
        else:
            first, floored = v2_eval_sizes(*image.shape[-2:], short=self.size[0], stride=self.stride)
            x = pil_resize(image, first).float().div_(255)
            if floored != first:
                x = torch.nn.functional.interpolate(x[None], floored, mode="bilinear", align_corners=True)[0]
        return (x.flip(0) if self.flip_channels else x), mask


def interpolation_mode(name: str) -> v2.InterpolationMode:
    return v2.InterpolationMode.BICUBIC if name == "bicubic" else v2.InterpolationMode.BILINEAR


def to_model_input(image: Tensor, *, channel_order: str, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)) -> Tensor:
    """uint8 RGB -> float in [0, 1], flipped to BGR for the v1-based checkpoints (trained on OpenCV reads)."""
    x = F.to_dtype(image.as_subclass(Tensor), torch.float32, scale=True)
    if channel_order == "bgr":
        x = x.flip(-3)
    if tuple(mean) != (0.0, 0.0, 0.0) or tuple(std) != (1.0, 1.0, 1.0):
        x = F.normalize(x, list(mean), list(std))
    return x


def _resize_pair(image: Tensor, mask: Tensor, size: tuple[int, int], *, backend: Resizer, interpolation,
                 antialias: bool) -> tuple[Tensor, Tensor]:
    """Image and mask (nearest) to (h, w) the way the official family did: OpenCV (v1), PIL (v2) or torchvision."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image, mask
    if backend == "opencv":
        img = cv_resize(np.ascontiguousarray(image.as_subclass(Tensor).permute(1, 2, 0).numpy()), size)
        m = cv_resize(mask.as_subclass(Tensor).numpy(), size, nearest=True)
        return (tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)),
                tv_tensors.Mask(torch.from_numpy(np.ascontiguousarray(m))))
    if backend == "pil":
        mode = Image.BICUBIC if interpolation == v2.InterpolationMode.BICUBIC else Image.BILINEAR
        return (tv_tensors.Image(pil_resize(image.as_subclass(Tensor), size, resample=mode)),
                tv_tensors.Mask(pil_resize_mask(mask.as_subclass(Tensor), size)))
    return (F.resize(image, list(size), interpolation=interpolation, antialias=antialias),
            F.resize(mask, list(size)))


class SegTrainTransform:
    """(image uint8, mask uint8, crop (h, w)) -> (float image, uint8 mask) at the crop size.

    `backend`: who resizes, as in the official family (v1: OpenCV bilinear, no antialias; v2: PIL bicubic). The
    crop follows the official class-ratio rule (`class_ratio_crop`: only 255 is left out of the
    histogram, so ADE20K's "other" counts)."""

    def __init__(self, aug: SegAugment, *, ignore: int, hflip: float, interpolation: str, channel_order: str,
                 antialias: bool = True, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), backend: Resizer = "torch"
                 ) -> None:
        self.aug, self.ignore, self.channel_order, self.mean, self.std = aug, ignore, channel_order, mean, std
        self.interpolation, self.antialias, self.backend = interpolation_mode(interpolation), antialias, backend
        self.hflip = hflip
        post = []
        if aug.blur > 0:
            post.append(v2.RandomApply([v2.GaussianBlur(7, sigma=(1e-3, aug.blur_sigma))], p=aug.blur))
        if aug.photometric > 0:
            post.append(v2.RandomPhotometricDistort(p=aug.photometric))
        if aug.rotate > 0:
            post.append(v2.RandomRotation(aug.rotate, interpolation=v2.InterpolationMode.BILINEAR,
                                          fill={tv_tensors.Image: 0, tv_tensors.Mask: ignore}))
        self.post = v2.Compose(post) if post else None

    def _resize(self, image: Tensor, mask: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        return _resize_pair(image, mask, size, backend=self.backend, interpolation=self.interpolation,
                            antialias=self.antialias)

    def _random_size(self, height: int, width: int) -> tuple[int, int]:
        """Shorter side U{lo..hi}; v1 (no cap): long side int(s * long / short); v2: both sides scaled by
        min(s / short, cap / long) and truncated."""
        s = int(torch.randint(self.aug.short_side[0], self.aug.short_side[1] + 1, ()))
        if self.aug.max_long_side is None:
            return short_side_size(height, width, s)
        scale = min(s / min(height, width), self.aug.max_long_side / max(height, width))
        return int(height * scale), int(width * scale)

    def __call__(self, image: tv_tensors.Image, mask: tv_tensors.Mask, size: tuple[int, int] | None):
        if size is None:
            raise ValueError("the training transform needs the crop size from the sampler")
        image, mask = self._resize(image, mask, self._random_size(*image.shape[-2:]))
        if self.hflip > 0 and float(torch.rand(())) < self.hflip:
            image, mask = F.horizontal_flip(image), F.horizontal_flip(mask)
        image, mask = self._fit(image, mask, size)
        top, left = class_ratio_crop(mask.as_subclass(Tensor), size, max_ratio=self.aug.cat_max_ratio,
                                     repeats=self.aug.crop_tries)
        image, mask = F.crop(image, top, left, *size), F.crop(mask, top, left, *size)
        if self.post is not None:
            image, mask = self.post(image, mask)
        return to_model_input(image, channel_order=self.channel_order, mean=self.mean, std=self.std), mask

    def _fit(self, image: Tensor, mask: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """Make both sides at least the crop: pad bottom/right (image 0, mask ignore; v2) or resize so that the
        shorter side is the crop's, aspect kept (v1 `resize_if_needed`)."""
        (h, w), (H, W) = size, image.shape[-2:]
        if H >= h and W >= w:
            return image, mask
        if self.aug.pad_crop:
            pad = [0, 0, max(w - W, 0), max(h - H, 0)]          # left, top, right, bottom
            return F.pad(image, pad, fill=0), F.pad(mask, pad, fill=self.ignore)
        return self._resize(image, mask, short_side_size(H, W, max(h, w)))


def official_eval_transform(family: str, size: tuple[int, int], *, stride: int, validation: bool,
                            channel_order: str):
    """The official segmentation input of a family (training.md §9.4, §9.5). `validation` (the per-epoch score of
    training): image and mask to exactly `size`. Else the evaluation protocol: v1 the image to exactly `size` by
    OpenCV; v2 the shorter side to `size[0]` by PIL bicubic, floored to a multiple of `stride`; the mask stays at
    its original size (the task brings the logits to it)."""
    if family == "v1":   # OpenCV reads BGR: the flip gives RGB when asked for
        return CvSegEvalTransform(tuple(size), resize_mask=validation, flip_channels=channel_order == "rgb")
    return PilSegEvalTransform(tuple(size), stride=stride, resize_mask=validation,
                               flip_channels=channel_order == "bgr")
