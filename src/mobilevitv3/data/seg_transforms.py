"""Joint image/mask augmentation of the official segmentation recipes, with torchvision transforms v2.

v2-based recipes (VOC and ADE20K): random shorter side in [256, 768] with the long side capped at 1024 (bicubic),
flip, 512x512 crop padded with the ignore value and retried up to 10 times until no class covers more than 75% of
it, Gaussian blur (p 0.5, sigma U(0, 1)), SSD-style photometric distortion, rotation U(-10, 10) degrees.
v1-based recipe (VOC): shorter side in [256, 1024] (bilinear), crop 512 after enlarging a too-small image instead
of padding it, flip; nothing else. Masks are always resized and rotated with nearest neighbour (v2 does so for
`tv_tensors.Mask`). Output: float [3, h, w] in [0, 1] in the model's channel order, and the uint8 mask.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ..errors import UserError

# task_options keys that are not augmentation: the data set kind, and the class names a checkpoint carries
NOT_AUGMENTATION = ("dataset", "classes")


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
    def from_options(cls, options: dict[str, Any]) -> "SegAugment":
        known = {f.name: f for f in dataclasses.fields(cls)}
        options = {k: v for k, v in options.items() if k not in NOT_AUGMENTATION}
        for key in options:
            if key not in known:
                close = difflib.get_close_matches(key, list(known), n=2)
                raise UserError(f"task_options: unknown segmentation option {key!r}"
                                f"{'; did you mean ' + ', '.join(close) + '?' if close else ''}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
        return cls(**values)


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


def class_balanced_crop(image: Tensor, mask: Tensor, size: tuple[int, int], *, ignore: int, max_ratio: float,
                        tries: int) -> tuple[Tensor, Tensor]:
    """Random `size` window (the inputs are at least that large); up to `tries` draws until no class covers more
    than `max_ratio` of the labelled pixels of the window (the last draw is kept)."""
    (h, w), (H, W) = size, mask.shape[-2:]
    for _ in range(max(1, tries)):
        top, left = int(torch.randint(H - h + 1, ())), int(torch.randint(W - w + 1, ()))
        window = mask[..., top:top + h, left:left + w]
        counts = torch.bincount(window[window != ignore].flatten().long())
        counts = counts[counts > 0]
        if max_ratio >= 1.0 or (len(counts) > 1 and counts.max() < max_ratio * counts.sum()):
            break
    return F.crop(image, top, left, h, w), F.crop(mask, top, left, h, w)


class SegTrainTransform:
    """(image uint8, mask uint8, crop (h, w)) -> (float image, uint8 mask) at the crop size."""

    def __init__(self, aug: SegAugment, *, ignore: int, hflip: float, interpolation: str, channel_order: str,
                 antialias: bool = True, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)) -> None:
        self.aug, self.ignore, self.channel_order, self.mean, self.std = aug, ignore, channel_order, mean, std
        self.interpolation, self.antialias = interpolation_mode(interpolation), antialias
        lo, hi = aug.short_side
        self.resize = v2.Compose([
            v2.RandomShortestSize(list(range(lo, hi + 1)), max_size=aug.max_long_side,
                                  interpolation=self.interpolation, antialias=antialias),
            v2.RandomHorizontalFlip(hflip)])
        post = []
        if aug.blur > 0:
            post.append(v2.RandomApply([v2.GaussianBlur(7, sigma=(1e-3, aug.blur_sigma))], p=aug.blur))
        if aug.photometric > 0:
            post.append(v2.RandomPhotometricDistort(p=aug.photometric))
        if aug.rotate > 0:
            post.append(v2.RandomRotation(aug.rotate, interpolation=v2.InterpolationMode.BILINEAR,
                                          fill={tv_tensors.Image: 0, tv_tensors.Mask: ignore}))
        self.post = v2.Compose(post) if post else None

    def __call__(self, image: tv_tensors.Image, mask: tv_tensors.Mask, size: tuple[int, int] | None):
        if size is None:
            raise ValueError("the training transform needs the crop size from the sampler")
        image, mask = self.resize(image, mask)
        image, mask = self._fit(image, mask, size)
        image, mask = class_balanced_crop(image, mask, size, ignore=self.ignore, max_ratio=self.aug.cat_max_ratio,
                                          tries=self.aug.crop_tries)
        if self.post is not None:
            image, mask = self.post(image, mask)
        return to_model_input(image, channel_order=self.channel_order, mean=self.mean, std=self.std), mask

    def _fit(self, image: Tensor, mask: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """Make both sides at least the crop: pad (image 0, mask ignore) or enlarge, aspect kept."""
        (h, w), (H, W) = size, image.shape[-2:]
        if H >= h and W >= w:
            return image, mask
        if self.aug.pad_crop:
            pad = [0, 0, max(w - W, 0), max(h - H, 0)]          # left, top, right, bottom
            return F.pad(image, pad, fill=0), F.pad(mask, pad, fill=self.ignore)
        scale = max(h / H, w / W)
        new = [max(h, round(H * scale)), max(w, round(W * scale))]
        return (F.resize(image, new, interpolation=self.interpolation, antialias=self.antialias),
                F.resize(mask, new))


class SegEvalTransform:
    """Official evaluation: the image resized to exactly `size` (aspect not kept), the mask left at its original
    size (the logits are resized back to it before the argmax)."""

    def __init__(self, size: tuple[int, int], *, interpolation: str, channel_order: str, antialias: bool = True,
                 mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)) -> None:
        self.size, self.interpolation, self.antialias = list(size), interpolation_mode(interpolation), antialias
        self.channel_order, self.mean, self.std = channel_order, mean, std

    def __call__(self, image: tv_tensors.Image, mask: tv_tensors.Mask, size: tuple[int, int] | None = None):
        image = F.resize(image, self.size, interpolation=self.interpolation, antialias=self.antialias)
        return to_model_input(image, channel_order=self.channel_order, mean=self.mean, std=self.std), mask
