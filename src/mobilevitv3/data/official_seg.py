"""Segmentation pieces of the official pipelines that torchvision's transforms do not give (training.md §9).

- `class_ratio_crop`: the v2 crop's class-ratio rule. The histogram drops only the value 255 (so ADE20K's stored
  0 "other" counts as a class); a window without valid pixels is re-checked instead of redrawn; up to 10 repeats
  after the first window, the last one drawn is kept unchecked.
- `v2_eval_sizes` / `pil_resize`: the v2 evaluation input: shorter side 512 (aspect kept, long side truncated)
  with PIL's bicubic, then floored to a multiple of the output stride (bilinear, align_corners True).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from .cv_transforms import short_side_size

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
                x = F.interpolate(x[None], floored, mode="bilinear", align_corners=True)[0]
        return (x.flip(0) if self.flip_channels else x), mask
