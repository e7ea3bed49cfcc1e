"""Calibration images for INT8 quantization (N images of a data set, read exactly as `mobilevitv3 eval` reads them)
and `quantize_from`, the library side of `mobilevitv3 quantize`.

The images come from the validation split of DATA (`digits`, `scenes`, an ImageFolder, a VOC/ADE20K/COCO root)
through the task's own evaluation transform, so the quantizer sees the model's preprocessing (channel order, resize,
crop, scale) and nothing else. A seeded random subset is taken, the same on every run. To keep calibration and
evaluation apart, give `--calib` a different folder from the one `eval --data` reads.
"""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..export.quantize import MIN_CALIBRATION, quantize
from ..tasks import get_task

log = logging.getLogger(__name__)
EVAL_FIELDS = ("image_size", "eval_resize", "eval_crop", "interpolation", "channel_order", "task_options")


def quantize_from(source: str, *, weights: str | None = None, calib: str | None, calib_images: int = 256, fmt: str,
                  out: str, method: str = "minmax", num_classes: int | None = None,
                  copy: Literal["model", "ema"] | None = None, image_size: int | None = None) -> dict:
    """INT8 `fmt` file of a checkpoint (or NAME + weights, or a bare NAME: random weights) calibrated on
    `calib_images` images of `calib`; the evaluation settings used travel in the file (`eval_config`)."""
    from ..export.quantize import check_format
    from .run import is_file_argument, load_model
    check_format(fmt)          # a format or runtime package problem is reported before any model or data work
    qat = _qat_config(source if weights is None else weights)
    if qat is not None:
        return _quantize_qat(weights or source, qat, fmt=fmt, out=out, calib=calib, copy=copy)
    if calib is None:
        raise UserError("--calib DATA is needed: post-training quantization calibrates on the model's own data")
    if weights is None and not is_file_argument(source):
        from ..models import create_model
        from ..train.config import TrainConfig
        model = create_model(source, num_classes=num_classes).eval()
        cfg = TrainConfig(model=source)
    else:
        model, cfg = load_model(source, weights, num_classes=num_classes, copy=copy)
    if image_size is not None:
        cfg = replace(cfg, image_size=image_size, eval_crop=image_size)
    images = calibration_images(model, cfg, calib, calib_images)
    settings = {k: getattr(cfg, k) for k in EVAL_FIELDS}
    report = quantize(model, fmt, out, calibration=images, method=method,
                      metadata={"eval_config": json.dumps(settings)})
    return {**report, "calibration_data": calib}


def calibration_images(model: nn.Module, cfg: Any, data: str, count: int, *, seed: int = 0) -> list[Tensor]:
    """`count` preprocessed images [3, H, W] from `data`'s validation split for `model` (its task decides how the
    data is read); `cfg` is the model's TrainConfig (the one saved in its checkpoint, or a default)."""
    if not isinstance(count, int) or count < MIN_CALIBRATION:
        raise UserError(f"--calib-images must be at least {MIN_CALIBRATION}, got {count}")
    task = get_task(model.identity.task)
    try:
        _, val = task.build_datasets(replace(cfg, data=data), model, train=False)
    except UserError as e:
        raise UserError(f"calibration data {data}: {e}") from None
    found = getattr(val, "num_classes", model.num_classes)
    if found != model.num_classes:   # e.g. a detection or segmentation root given to a classifier
        raise UserError(f"calibration data {data} has {found} classes but {model.identity.name} predicts "
                        f"{model.num_classes}: calibrate with data of the model's own task and classes")
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


def _qat_config(path: str) -> dict[str, Any] | None:
    """The saved TrainConfig of a `train --qat` checkpoint, else None."""
    from ..train.checkpoints import saved_config
    from .runtime import is_runtime_file
    if is_runtime_file(path):
        return None
    saved, _ = saved_config(path)
    return saved if saved and saved.get("qat") else None


def _quantize_qat(path: str, saved: dict[str, Any], *, fmt: str, out: str, calib: str | None,
                  copy: Literal["model", "ema"] | None) -> dict:
    """A QAT checkpoint -> its INT8 .pte, from the trained fake-quant ranges (no calibration)."""
    from ..export.pt2e import QATModel
    from ..export.quantize import quantize_qat
    from ..models import Identity, create_model
    from ..train.config import from_dict
    from ..weights import read_weights
    if fmt != "executorch":
        raise UserError(f"{path} is a quantization-aware-trained checkpoint (PT2E fake quantization for XNNPACK): "
                        f"quantize it with --format executorch; for {fmt}, quantize the float checkpoint")
    file = read_weights(path, copy=copy)
    ident = Identity.from_dict(file.identity)
    cfg = from_dict(saved)
    float_model = create_model(ident.arch + (f".{ident.tag}" if ident.tag else ""), num_classes=ident.num_classes,
                               **file.identity.get("build", {}))
    float_model.identity = ident
    model = QATModel(float_model, (cfg.image_size, cfg.image_size))
    model.load_state_dict(file.state)
    check = calibration_images(float_model, cfg, calib, MIN_CALIBRATION) if calib else None
    settings = {k: getattr(cfg, k) for k in EVAL_FIELDS}
    report = quantize_qat(model, out, check_images=check, metadata={"eval_config": json.dumps(settings)})
    return {**report, "calibration_data": None}
