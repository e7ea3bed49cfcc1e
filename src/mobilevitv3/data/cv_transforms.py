"""The v1 family's OpenCV image pipeline (training.md §6, §9, §10): BGR uint8 (`images.read_bgr`), resize with
`INTER_LINEAR` (2x2 taps at any scale: no antialias), crop with floor division, to a [0, 1] float tensor in the
stored order.

Evaluation: shorter side -> 288 (long side truncated), centre crop 256. Training: the torchvision random resized
crop algorithm with the official ratio bounds (3/4, 4/3 rounded to 3 decimals), the crop resized to the sampler's
(h, w), flip p 0.5. Draws come from torch's RNG (seeded per DataLoader worker like the official Python `random`):
the same distributions, reproducible with the training loop's seeding.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .images import rgb_to_bgr


def from_rgb_tensor(image: Tensor) -> np.ndarray:
    """A [3, H, W] uint8 RGB tensor (in-memory data sets) as the HWC BGR array OpenCV would have read."""
    return rgb_to_bgr(image.permute(1, 2, 0).numpy())


def as_bgr(image: np.ndarray | Tensor | Image.Image) -> np.ndarray:
    """HWC uint8 BGR from an OpenCV read (kept), a PIL RGB image or a [3, H, W] uint8 RGB tensor."""
    if isinstance(image, np.ndarray):
        return image
    if isinstance(image, Tensor):
        if image.dtype != torch.uint8:
            raise ValueError(f"the OpenCV pipeline takes uint8 images, got a {image.dtype} tensor")
        return from_rgb_tensor(image)
    return rgb_to_bgr(np.asarray(image.convert("RGB")))


def cv_resize(image: np.ndarray, size: tuple[int, int], *, nearest: bool = False) -> np.ndarray:
    """Resize to (h, w): bilinear without antialias (images) or nearest (masks), as `cv2.resize` does."""
    import cv2  # here, not at import: importing OpenCV edits the environment (LD_LIBRARY_PATH)
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)


def short_side_size(height: int, width: int, short: int) -> tuple[int, int]:
    """(h, w) with the shorter side `short` and the longer one int(short * long / short_side), truncated."""
    if height <= width:
        return short, int(short * width / height)
    return int(short * height / width), short


def center_offsets(height: int, width: int, size: int | tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, h, w) of the official centre crop: floor offsets (torchvision's CenterCrop rounds instead)."""
    ch, cw = (size, size) if isinstance(size, int) else size
    return max(0, (height - ch) // 2), max(0, (width - cw) // 2), ch, cw


def center_crop(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """The official centre crop of an HWC array."""
    top, left, ch, cw = center_offsets(*image.shape[:2], size)
    return image[top:top + ch, left:left + cw]


def to_tensor(image: np.ndarray, *, flip_channels: bool = False) -> Tensor:
    """HWC uint8 -> CHW float in [0, 1], channels as stored (BGR for an OpenCV read) unless `flip_channels`."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255)
    return x.flip(0) if flip_channels else x


def uniform(lo: float, hi: float) -> float:
    """One U(lo, hi) draw from torch's generator (the one the training loop seeds per sample)."""
    return float(torch.empty(()).uniform_(lo, hi))


def _randint(lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi], both inclusive (Python `random.randint`)."""
    return int(torch.randint(lo, hi + 1, ()))


def rrc_params(height: int, width: int, scale: tuple[float, float] = (0.08, 1.0),
               ratio: tuple[float, float] = (0.75, 1.333)) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random resized crop: area U(scale) x HW, log-uniform aspect, 10 tries, then the
    central crop clamped to the ratio bounds."""
    area, log_ratio = height * width, (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * uniform(*scale)
        aspect = math.exp(uniform(*log_ratio))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return _randint(0, height - h), _randint(0, width - w), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        h, w = height, round(height * max(ratio))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


@dataclass(frozen=True)
class CvEvalTransform:
    """Official v1 classification evaluation: short side -> `resize` (or exactly (h, w)), floor-centred `crop`."""
    resize: int | tuple[int, int] = 288
    crop: int | None = 256
    flip_channels: bool = False      # True: give RGB (the BGR checkpoints want False)

    def __call__(self, image: np.ndarray) -> Tensor:
        image = as_bgr(image)
        size = short_side_size(*image.shape[:2], self.resize) if isinstance(self.resize, int) else tuple(self.resize)
        image = cv_resize(image, size)
        if self.crop is not None:
            image = center_crop(image, self.crop)
        return to_tensor(image, flip_channels=self.flip_channels)


@dataclass(frozen=True)
class CvTrainTransform:
    """Official v1 classification training: random resized crop -> `size` (h, w) by INTER_LINEAR -> flip."""
    size: tuple[int, int]
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (0.75, 1.333)
    hflip: float = 0.5
    flip_channels: bool = False

    def __call__(self, image: np.ndarray) -> Tensor:
        image = as_bgr(image)
        top, left, h, w = rrc_params(*image.shape[:2], self.scale, self.ratio)
        image = cv_resize(image[top:top + h, left:left + w], self.size)
        if self.hflip > 0 and uniform(0.0, 1.0) <= self.hflip:
            image = image[:, ::-1]
        return to_tensor(image, flip_channels=self.flip_channels)


def _mask_tensor(mask: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(mask))


@dataclass(frozen=True)
class CvSegEvalTransform:
    """Official v1 segmentation input: the image resized to exactly `size` (INTER_LINEAR). `resize_mask`: the
    mask too, nearest (training-time validation scores at that size); else it stays at the original size."""
    size: tuple[int, int] = (512, 512)
    resize_mask: bool = False
    flip_channels: bool = False

    def __call__(self, image: Tensor, mask: Tensor | None, size: tuple[int, int] | None = None):
        img = cv_resize(from_rgb_tensor(image.as_subclass(Tensor)), tuple(self.size))
        if mask is not None and self.resize_mask:
            mask = _mask_tensor(cv_resize(mask.as_subclass(Tensor).numpy(), tuple(self.size), nearest=True))
        return to_tensor(img, flip_channels=self.flip_channels), mask
