"""`quantize_from`, the library side of `mobilevitv3 quantize`: a checkpoint (or NAME + weights, or a bare NAME) ->
an INT8 file calibrated on the model's own data, with the evaluation settings it was calibrated at stored in the
file (`eval_config`), so `eval`/`predict` of the file read images the same way. The checkpoint is read once;
a `train --qat` checkpoint (its saved config says so) converts from its trained fake-quant ranges instead.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from ..errors import UserError
from ..export.api import FORMATS
from ..export.pt2e import QATModel
from ..export.quantize import MIN_CALIBRATION, check_format, check_method, quantize, quantize_qat
from ..models import model_from_identity
from ..models.registry import described
from ..tasks import EvalSettings, evaluated_identity
from ..weights import Weights
from .calibration import calibration_images, check_count, labelled_images
from .load import from_file, read_source
from .runtime import is_runtime_file

MAX_VALIDATION = 2000      # labelled images accuracy control measures on (it runs them many times)


def quantize_from(source: str, *, weights: str | None = None, calib: str | None, calib_images: int = 256, fmt: str,
                  out: str, method: str | None = None, num_classes: int | None = None,
                  copy: Literal["model", "ema"] | None = None, image_size: int | None = None,
                  max_drop: float | None = None, val: str | None = None, speed_check: bool = True) -> dict:
    """INT8 `fmt` file of a checkpoint (or NAME + weights, or a bare NAME: random weights) calibrated on
    `calib_images` images of `calib`; `image_size`: a square evaluation (and graph) size other than the model's;
    `max_drop` (OpenVINO, classifiers): the top-1 drop allowed on `val` (default: `calib`), through NNCF;
    `speed_check`: time the file against its runtime's float path (export.quantize)."""
    check_format(fmt, max_drop)   # a format or runtime package problem is reported before any model or data work
    check_method(fmt, method)
    check_count(calib_images)
    _check_output(fmt, out)
    if is_runtime_file(source):
        raise UserError(f"{Path(source).name} is already an exported model: quantize its checkpoint")
    file = read_source(source, weights, copy=copy, untrained=True)
    if file is not None and (file.config or {}).get("qat"):
        return _quantize_qat(file, fmt=fmt, out=out, calib=calib)
    if calib is None:
        raise UserError("--calib DATA is needed: post-training quantization calibrates on the model's own data")
    model, settings = from_file(source, file, num_classes=num_classes)
    if image_size is not None:
        settings = settings.at_size(image_size)
        model.identity = evaluated_identity(settings, model)    # the file says the size it was calibrated at
    images = calibration_images(model, settings, calib, calib_images)
    validation = None if max_drop is None else labelled_images(model, settings, val or calib, MAX_VALIDATION)
    report = quantize(model, fmt, out, calibration=images, method=method,
                      metadata={"eval_config": json.dumps(settings.to_dict())}, max_drop=max_drop,
                      validation=validation, compare_speed=speed_check)
    return {**report, "calibration_data": calib} | ({"validation_data": val or calib} if max_drop is not None else {})


def _check_output(fmt: str, out: str | os.PathLike) -> None:
    suffix = FORMATS[fmt].suffix
    if Path(out).suffix != suffix:
        raise UserError(f"-o {out}: an INT8 {fmt} file is written as *{suffix} (the runtime is chosen by the "
                        f"suffix when the file is run)")


def _quantize_qat(file: Weights, *, fmt: str, out: str, calib: str | None) -> dict:
    """A QAT checkpoint -> its INT8 .pte, from the trained fake-quant ranges (no calibration)."""
    if fmt != "executorch":
        raise UserError(f"{file.path} is a quantization-aware-trained checkpoint (PT2E fake quantization for "
                        f"XNNPACK): quantize it with --format executorch; for {fmt}, quantize the float checkpoint")
    float_model = model_from_identity(described(file))
    settings = EvalSettings.from_dict(file.config).pinned_to(float_model.identity)
    size = int(file.config.get("image_size", settings.image_size))
    model = QATModel(float_model, (size, size))
    model.load_state_dict(file.state)
    check = calibration_images(float_model, settings, calib, MIN_CALIBRATION) if calib else None
    report = quantize_qat(model, out, check_images=check, metadata={"eval_config": json.dumps(settings.to_dict())})
    return {**report, "calibration_data": None}
