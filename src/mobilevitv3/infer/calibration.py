"""Calibration images for INT8 quantization: N images of a data set, read exactly as `mobilevitv3 eval` reads them.

The images come from the validation split of DATA (`digits`, `scenes`, an ImageFolder, a VOC/ADE20K/COCO root)
through the task's own evaluation transform, so the quantizer sees the model's preprocessing (channel order, resize,
crop, scale) and nothing else. A seeded random subset is taken, the same on every run. To keep calibration and
evaluation apart, give `--calib` a different folder from the one `eval --data` reads.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..export.quantize import MIN_CALIBRATION
from ..tasks import get_task

log = logging.getLogger(__name__)


def labelled_images(model: nn.Module, cfg: Any, data: str, count: int) -> list[tuple[Tensor, int]]:
    """Up to `count` (image [3, H, W], label) pairs of a classifier's validation split of `data`, in order, read
    like `calibration_images` (accuracy-controlled quantization measures top-1 on them); none for other tasks,
    which `quantize` refuses with one line."""
    if model.identity.task != "classification":
        return []
    val = _validation_split(model, cfg, data)
    pairs = []
    for index in range(min(count, len(val))):
        sample = val[index]
        if sample is not None:
            pairs.append((_image_of(sample), int(sample[1])))
    return pairs


def _validation_split(model: nn.Module, cfg: Any, data: str):
    task = get_task(model.identity.task)
    try:
        _, val = task.build_datasets(replace(cfg, data=data), model, train=False)
    except UserError as e:
        raise UserError(f"calibration data {data}: {e}") from None
    found = getattr(val, "num_classes", model.num_classes)
    if found != model.num_classes:   # e.g. a detection or segmentation root given to a classifier
        raise UserError(f"calibration data {data} has {found} classes but {model.identity.name} predicts "
                        f"{model.num_classes}: calibrate with data of the model's own task and classes")
    return val


def check_count(count: int) -> None:
    """A usable `--calib-images`, or a one-line UserError (checked before any model or data is read)."""
    if not isinstance(count, int) or count < MIN_CALIBRATION:
        raise UserError(f"--calib-images must be at least {MIN_CALIBRATION}, got {count}")


def calibration_images(model: nn.Module, cfg: Any, data: str, count: int, *, seed: int = 0) -> list[Tensor]:
    """`count` preprocessed images [3, H, W] from `data`'s validation split for `model` (its task decides how the
    data is read); `cfg` is the model's evaluation settings (the loader's)."""
    check_count(count)
    val = _validation_split(model, cfg, data)
    size = len(val)
    if size < MIN_CALIBRATION:
        raise UserError(f"calibration data {data} has {size} image(s); at least {MIN_CALIBRATION} are needed")
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed)).tolist()
    images: list[Tensor] = []
    for index in order:
        image = _image_of(val[index])
        if image is not None:
            images.append(image)
        if len(images) == count:
            break
    if len(images) < min(count, MIN_CALIBRATION):
        raise UserError(f"calibration data {data}: only {len(images)} readable image(s)")
    if len(images) < count:
        log.warning("calibration data %s has %d readable images; using all of them (asked for %d)", data,
                    len(images), count)
    return images


def _image_of(sample: Any) -> Tensor | None:
    """The image tensor of one validation sample of any task ((image, label, ...) or (image, target))."""
    if sample is None:
        return None
    image = sample[0] if isinstance(sample, (tuple, list)) else sample.get("image") if isinstance(sample, dict) \
        else None
    if not isinstance(image, Tensor) or image.ndim != 3:
        raise UserError("the data set does not give [3, H, W] images for calibration")
    return image.float()
