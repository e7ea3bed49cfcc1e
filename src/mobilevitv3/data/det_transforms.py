"""Joint image/box transforms of the official SSD recipes (training.md §10).

Training (`DetTrainTransform`): the family's official pipeline from `official_det_aug`: SSD crop (min IoU from
{0 = no crop, 0.1, 0.3, 0.5, 0.7, 0.9, 1}, 40 trials, sides U(0.3, 1), aspect in [0.5, 2], best IoU over all
boxes, boxes kept when their centre is inside; v2 also >= 100 px sides), photometric distortion (v1 OpenCV-style
on BGR, v2 ColorJitter-style), flip, resize to the input size (aspect not kept; v1 OpenCV bilinear, v2 PIL
bicubic); zoom-out is disabled as in the official recipes. `DetEvalTransform`: a plain torchvision resize (predict).
Boxes stay in pixels of the resized image; the loss normalises them.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any

from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from ..errors import UserError
from .official_det_aug import OfficialDetTrainTransform
from .seg_transforms import NOT_AUGMENTATION, interpolation_mode, to_model_input


@dataclass(frozen=True)
class DetAugment:
    """The training augmentation of a detection recipe: `task_options` in the YAML (flip: `hflip`)."""
    iou_crop: bool = True
    crop_min_scale: float = 0.3
    photometric: float = 0.5        # probability of each photometric step (0: off)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> DetAugment:
        known = [f.name for f in dataclasses.fields(cls)]
        options = {k: v for k, v in options.items() if k not in NOT_AUGMENTATION}
        for key in options:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=2)
                raise UserError(f"task_options: unknown detection option {key!r}"
                                f"{'; did you mean ' + ', '.join(close) + '?' if close else ''}")
        return cls(**options)


class DetTrainTransform:
    """(image uint8, {"boxes", "labels"}, input (h, w)) -> (float image at (h, w), target), the official pipeline
    of the model's family (`official_det_aug.OfficialDetTrainTransform`): SSD crop (t = 0: no crop; v2: crops of
    >= 100 px), photometric distortion (v1 OpenCV-style on BGR, v2 ColorJitter-style), flip, resize (v1 OpenCV
    bilinear, v2 PIL bicubic)."""

    def __init__(self, aug: DetAugment, *, hflip: float, interpolation: str, channel_order: str,
                 antialias: bool = True, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), family: str = "v2") -> None:
        # the official pipelines have no mean/std, and their resize mode is the family's: both are ignored
        flip = channel_order == ("rgb" if family == "v1" else "bgr")   # v1 works in OpenCV's BGR
        self.official = OfficialDetTrainTransform(family, hflip=hflip, photometric=aug.photometric,
                                                  crop=aug.iou_crop, min_scale=aug.crop_min_scale, flip_channels=flip)

    def __call__(self, image: tv_tensors.Image, target: dict, size: tuple[int, int] | None):
        return self.official(image, target, size)


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
