"""Joint image/box augmentation of the official SSD recipes, with torchvision transforms v2.

Training: SSD random IoU crop (min IoU from {0, 0.1, 0.3, 0.5, 0.7, 0.9, no crop}, 40 trials, sides U(0.3, 1),
aspect in [0.5, 2], boxes kept when their centre is inside), SSD photometric distortion (each step p 0.5),
horizontal flip, resize to the input size (aspect not kept); zoom-out is disabled as in the official recipes.
Evaluation: resize to the input size. Boxes stay in pixels of the resized image; the loss normalises them.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any

from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ..errors import UserError
from .seg_transforms import NOT_AUGMENTATION, interpolation_mode, to_model_input


@dataclass(frozen=True)
class DetAugment:
    """The training augmentation of a detection recipe: `task_options` in the YAML (flip: `hflip`)."""
    iou_crop: bool = True
    crop_min_scale: float = 0.3
    photometric: float = 0.5        # probability of each photometric step (0: off)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> "DetAugment":
        known = [f.name for f in dataclasses.fields(cls)]
        options = {k: v for k, v in options.items() if k not in NOT_AUGMENTATION}
        for key in options:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=2)
                raise UserError(f"task_options: unknown detection option {key!r}"
                                f"{'; did you mean ' + ', '.join(close) + '?' if close else ''}")
        return cls(**options)


class DetTrainTransform:
    """(image uint8, {"boxes", "labels"}, input (h, w)) -> (float image at (h, w), target without lost boxes)."""

    def __init__(self, aug: DetAugment, *, hflip: float, interpolation: str, channel_order: str,
                 antialias: bool = True, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)) -> None:
        self.crop = v2.RandomIoUCrop(min_scale=aug.crop_min_scale, max_scale=1.0, min_aspect_ratio=0.5,
                                     max_aspect_ratio=2.0, trials=40) if aug.iou_crop else None
        self.augment = v2.Compose([v2.RandomPhotometricDistort(p=aug.photometric)] * (aug.photometric > 0)
                                  + [v2.RandomHorizontalFlip(hflip)])
        # drops the boxes the crop left out (RandomIoUCrop zeroes them) and any box under a pixel
        self.sanitize = v2.SanitizeBoundingBoxes()
        self.interpolation, self.antialias = interpolation_mode(interpolation), antialias
        self.channel_order, self.mean, self.std = channel_order, mean, std

    def __call__(self, image: tv_tensors.Image, target: dict, size: tuple[int, int] | None):
        if size is None:
            raise ValueError("the training transform needs the input size from the sampler")
        if self.crop is not None and len(target["labels"]):    # the IoU crop needs a box to aim at
            image, target = self.crop(image, target)
        image, target = self.sanitize(*self.augment(image, target))
        image = F.resize(image, list(size), interpolation=self.interpolation, antialias=self.antialias)
        target = {**target, "boxes": F.resize(target["boxes"], list(size))}
        return to_model_input(image, channel_order=self.channel_order, mean=self.mean, std=self.std), target


class DetEvalTransform:
    def __init__(self, size: tuple[int, int], *, interpolation: str, channel_order: str, antialias: bool = True,
                 mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)) -> None:
        self.size, self.interpolation, self.antialias = list(size), interpolation_mode(interpolation), antialias
        self.channel_order, self.mean, self.std = channel_order, mean, std

    def __call__(self, image: tv_tensors.Image, target: dict | None = None, size: tuple[int, int] | None = None):
        image = F.resize(image, self.size, interpolation=self.interpolation, antialias=self.antialias)
        if target is not None:
            target = {**target, "boxes": F.resize(target["boxes"], self.size)}
        return to_model_input(image, channel_order=self.channel_order, mean=self.mean, std=self.std), target
