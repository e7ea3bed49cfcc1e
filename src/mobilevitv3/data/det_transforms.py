"""Joint image/box transforms of the official SSD recipes (training.md §10.2, §10.3).

Training (`DetTrainTransform`): the family's official pipeline. SSD crop: draw a minimum IoU t from {0, .1, .3, .5,
.7, .9, 1}; t = 0 returns the image uncropped (torchvision's RandomIoUCrop makes that an unconstrained crop, and its
>= 1 the no-crop option); else up to 40 trials of a window with sides U(0.3, 1) x the image, aspect h/w in [0.5, 2],
rejected when its best IoU over *all* boxes is below t or no box centre is strictly inside; the v2 family also
rejects windows under 100 px on a side. Photometric distortion: v2 ColorJitter-style (torchvision); v1 OpenCV style
on BGR uint8: gain contrast, additive brightness, HSV saturation and hue in OpenCV units (an integer shift in
[-12, 12]; negative hues clip to 0, hues over 179 wrap in OpenCV's HSV->BGR), a second contrast when the first was
skipped, channel permutation. Then flip, and the resize to the input size (aspect not kept; v1 OpenCV bilinear, v2
PIL bicubic); zoom-out is disabled as in the official recipes. Draws use torch's RNG (same distributions as the
official Python/numpy ones). Evaluation and `predict`: `OfficialDetEvalTransform` (the family's resize). Boxes stay
in pixels of the resized image; the loss normalises them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2

from .cv_transforms import cv_resize, from_rgb_tensor, to_tensor, uniform
from .seg_transforms import augment_from_options, pil_resize

IOU_OPTIONS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
TRIALS = 40
V2_MIN_SIDE = 100


@dataclass(frozen=True)
class DetAugment:
    """The training augmentation of a detection recipe: `task_options` in the YAML (flip: `hflip`)."""
    iou_crop: bool = True
    crop_min_scale: float = 0.3
    photometric: float = 0.5        # probability of each photometric step (0: off)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> DetAugment:
        return augment_from_options(cls, options, "detection")


def _iou(rect: Tensor, boxes: Tensor) -> Tensor:
    """IoU of one xyxy rectangle with every xyxy box [N, 4] -> [N]."""
    lt, rb = torch.maximum(boxes[:, :2], rect[:2]), torch.minimum(boxes[:, 2:], rect[2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    area = (boxes[:, 2:] - boxes[:, :2]).prod(dim=1)
    return inter / (area + (rect[2:] - rect[:2]).prod() - inter)


def _window(height: int, width: int, family: str, min_scale: float) -> Tensor | None:
    """One candidate crop rectangle (int-truncated xyxy), or None when its aspect is rejected."""
    w, h = uniform(min_scale * width, width), uniform(min_scale * height, height)
    if family == "v2":
        w, h = int(w), int(h)
    if not 0.5 <= h / w <= 2:
        return None
    left, top = uniform(0, width - w), uniform(0, height - h)
    return torch.tensor([int(left), int(top), int(left + w), int(top + h)], dtype=torch.float32)


def ssd_crop_window(boxes: Tensor, height: int, width: int, *, family: Literal["v1", "v2"],
                    min_scale: float = 0.3) -> Tensor | None:
    """The official SSD crop's rectangle (xyxy pixels) for an image with these boxes, or None for "no crop"."""
    if boxes.numel() == 0:
        return None
    boxes = boxes.float()
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    while True:
        t = IOU_OPTIONS[int(torch.randint(len(IOU_OPTIONS), ()))]
        if t == 0.0:
            return None
        for _ in range(TRIALS):
            rect = _window(height, width, family, min_scale)
            if rect is None or float(_iou(rect, boxes).max()) < t:
                continue
            inside = ((centres > rect[:2]) & (centres < rect[2:])).all(dim=1)
            if not bool(inside.any()):
                continue
            if family == "v2" and min(rect[2] - rect[0], rect[3] - rect[1]) < V2_MIN_SIDE:
                continue
            return rect
        # all trials failed: draw a new threshold


def apply_crop(boxes: Tensor, labels: Tensor, rect: Tensor) -> tuple[Tensor, Tensor]:
    """Keep the boxes whose centre is strictly inside `rect`, clipped to it and shifted to its origin."""
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    inside = ((centres > rect[:2]) & (centres < rect[2:])).all(dim=1)
    kept = boxes[inside].clone().float()
    kept[:, :2] = torch.maximum(kept[:, :2], rect[:2]) - rect[:2]
    kept[:, 2:] = torch.minimum(kept[:, 2:], rect[2:]) - rect[:2]
    return kept, labels[inside]


def ssd_crop(image: Tensor | np.ndarray, boxes: Tensor, labels: Tensor, *, family: Literal["v1", "v2"],
             min_scale: float = 0.3) -> tuple[Tensor | np.ndarray, Tensor, Tensor]:
    """The official SSD crop of a [C, H, W] tensor or an HWC array with its xyxy pixel boxes and labels."""
    chw = isinstance(image, Tensor)
    height, width = image.shape[-2:] if chw else image.shape[:2]
    rect = ssd_crop_window(boxes, height, width, family=family, min_scale=min_scale)
    if rect is None:
        return image, boxes, labels
    x1, y1, x2, y2 = (int(v) for v in rect)
    image = image[..., y1:y2, x1:x2] if chw else image[y1:y2, x1:x2]
    return (image, *apply_crop(boxes, labels, rect))


def hue_shift() -> int:
    """The v1 hue step: int(delta * 255), delta ~ U(-0.05, 0.05), truncated toward zero: OpenCV hue units."""
    return int(uniform(-0.05, 0.05) * 255)


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0, 255).astype(np.uint8)     # astype truncates, as the official conversion does


def photometric_v1(image: np.ndarray, p: float = 0.5) -> np.ndarray:
    """The v1 family's photometric distortion of an HWC uint8 BGR image."""
    import cv2  # here, not at import: importing OpenCV edits the environment (LD_LIBRARY_PATH)
    gates = torch.rand(6).tolist()
    x = image.astype(np.float32)
    alpha = uniform(0.5, 1.5) if gates[0] < p else 1.0
    x = x * alpha                                           # a plain gain, no blend towards the mean
    if gates[1] < p:
        x = x + uniform(-0.2, 0.2) * 255
    hsv = cv2.cvtColor(_to_u8(x), cv2.COLOR_BGR2HSV).astype(np.float32)
    if gates[2] < p:
        hsv[..., 1] *= uniform(0.5, 1.5)
    if gates[3] < p:
        hsv[..., 0] += hue_shift()                          # < 0 clips to 0; > 179 wraps in HSV2BGR
    out = cv2.cvtColor(_to_u8(hsv), cv2.COLOR_HSV2BGR)
    if alpha == 1.0 and gates[4] < p:
        out = _to_u8(out.astype(np.float32) * uniform(0.5, 1.5))
    if gates[5] < p:
        out = np.ascontiguousarray(out[..., torch.randperm(3).numpy()])
    return out


def _flip(image: Tensor | np.ndarray, boxes: Tensor, width: int) -> tuple[Tensor | np.ndarray, Tensor]:
    flipped = boxes.clone()
    flipped[:, [0, 2]] = width - boxes[:, [2, 0]]
    return (image.flip(-1) if isinstance(image, Tensor) else image[:, ::-1]), flipped


class DetTrainTransform:
    """The official SSD training pipeline of a family on (RGB uint8 image, {"boxes" xyxy pixels, "labels"}, size):
    v1: SSD crop -> OpenCV photometric (BGR) -> flip -> INTER_LINEAR resize, BGR output; v2: SSD crop (>= 100 px)
    -> ColorJitter-style photometric -> flip -> PIL bicubic resize, RGB output. Boxes come back in pixels of the
    resized image. `DetAugment` holds a recipe's `photometric`, `crop` (iou_crop) and `min_scale` (crop_min_scale).
    The official pipelines have no mean/std, and their resize mode is the family's."""

    def __init__(self, family: Literal["v1", "v2"], *, hflip: float = 0.5, photometric: float = 0.5,
                 crop: bool = True, min_scale: float = 0.3, flip_channels: bool = False) -> None:
        self.family, self.hflip, self.p, self.flip_channels = family, hflip, photometric, flip_channels
        self.crop, self.min_scale = crop, min_scale
        self.jitter = v2.RandomPhotometricDistort(p=photometric) if family == "v2" and photometric > 0 else None

    def __call__(self, image: Tensor, target: dict, size: tuple[int, int] | None):
        if size is None:
            raise ValueError("the training transform needs the input size from the sampler")
        boxes, labels = target["boxes"].as_subclass(Tensor).float(), target["labels"]
        img = from_rgb_tensor(image.as_subclass(Tensor)) if self.family == "v1" else image.as_subclass(Tensor)
        if self.crop:
            img, boxes, labels = ssd_crop(img, boxes, labels, family=self.family, min_scale=self.min_scale)
        if self.family == "v1" and self.p > 0:
            img = photometric_v1(img, self.p)
        elif self.jitter is not None:
            img = self.jitter(img)
        height, width = (img.shape[:2] if self.family == "v1" else img.shape[-2:])
        if self.hflip > 0 and uniform(0.0, 1.0) <= self.hflip:
            img, boxes = _flip(img, boxes, width)
        x = family_resize(img, tuple(size), family=self.family, flip_channels=self.flip_channels)
        scale = torch.tensor([size[1] / width, size[0] / height] * 2)
        boxes = tv_tensors.BoundingBoxes(boxes * scale, format="XYXY", canvas_size=tuple(size))
        return x, {**target, "boxes": boxes, "labels": labels}


def family_resize(image: Tensor | np.ndarray, size: tuple[int, int], *, family: str, flip_channels: bool) -> Tensor:
    """The official detection resize to (h, w), aspect not kept: v1 OpenCV bilinear on the HWC BGR array, v2 PIL
    bicubic on the [3, H, W] RGB tensor; a float [0, 1] tensor in the stored order (flipped when asked)."""
    if family == "v1":
        return to_tensor(cv_resize(np.ascontiguousarray(image), size), flip_channels=flip_channels)
    x = pil_resize(image.contiguous(), size).float().div_(255)
    return x.flip(0) if flip_channels else x


class OfficialDetEvalTransform:
    """The official detection evaluation input: the image resized to `size` as `family_resize`; boxes scaled."""

    def __init__(self, family: Literal["v1", "v2"], size: tuple[int, int], *, flip_channels: bool = False) -> None:
        self.family, self.size, self.flip_channels = family, tuple(size), flip_channels

    def __call__(self, image: Tensor, target: dict | None = None, size: tuple[int, int] | None = None):
        image = image.as_subclass(Tensor)
        height, width = image.shape[-2:]
        img = from_rgb_tensor(image) if self.family == "v1" else image
        x = family_resize(img, self.size, family=self.family, flip_channels=self.flip_channels)
        if target is not None:
            scale = torch.tensor([self.size[1] / width, self.size[0] / height] * 2)
            boxes = target["boxes"].as_subclass(Tensor).float() * scale
            target = {**target, "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=self.size)}
        return x, target

