"""Evaluation and prediction from files (the library side of `mobilevitv3 eval` and `mobilevitv3 predict`): the
model and its evaluation settings come from the one loader (`load.load`), the metrics and predictions from the
model's task."""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader

from ..data.images import read_rgb
from ..errors import UserError, device_from
from ..tasks import get_task
from .load import load

log = logging.getLogger(__name__)


def evaluate(source: str, *, weights: str | None = None, data: str, batch_size: int = 64, workers: int = 2,
             device: str = "auto", amp: str = "none", num_classes: int | None = None,
             copy: Literal["model", "ema"] | None = None) -> dict[str, Any]:
    """The task's metrics of the model on the validation split of `data`."""
    dev = device_from(device)
    if batch_size < 1 or workers < 0:
        raise UserError(f"--batch-size must be >= 1 and --workers >= 0, got {batch_size} and {workers}")
    model, settings = load(source, weights, device=dev, num_classes=num_classes, copy=copy)
    task = get_task(model.task)
    _, val = task.build_datasets(replace(settings, data=data), model, train=False)
    found = getattr(val, "num_classes", model.num_classes)
    if found != model.num_classes:
        raise UserError(f"{data} has {found} classes but {model.name} predicts {model.num_classes}; evaluation "
                        f"needs all the model's classes, in the same (sorted folder name) order")
    loader = DataLoader(val, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=task.collate)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    autocast = (lambda: torch.autocast(dev.type, dtype=dtype)) if dtype else (lambda: torch.autocast(
        dev.type, enabled=False))
    metrics = task.evaluate(model, loader, device=dev, autocast=autocast)
    if not metrics.get("images"):
        raise UserError(f"{data}: nothing to score: no validation image could be read "
                        f"({metrics.get('skipped_count', 0)} unreadable)")
    return {"model": model.name, "weights": str(weights or source), "data": data, **metrics}


def _overlay_paths(out: str, images: list[str]) -> list[Path]:
    """One PNG per input, `<stem>.png`, numbered when two inputs share a stem (never overwritten)."""
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create output folder {out}: {e.strerror or e}") from None
    taken: set[str] = set()         # names given so far: `x`, `x` and `x-1` become x.png, x-1.png, x-1-1.png
    paths = []
    for image in images:
        name, n = Path(image).stem, 0
        while name in taken:
            n += 1
            name = f"{Path(image).stem}-{n}"
        taken.add(name)
        paths.append(Path(out) / f"{name}.png")
    return paths


def predict(source: str, *, weights: str | None = None, images: list[str], top_k: int = 5, device: str = "auto",
            out: str | None = None, num_classes: int | None = None, copy: Literal["model", "ema"] | None = None,
            score_threshold: float | None = None) -> list[dict]:
    """One result per image file (classification: the top-k classes with probabilities; segmentation: classes by
    pixel share; detection: the top-k boxes above `score_threshold`). With `out`, segmentation and detection also
    draw their predictions into `out/<image stem>.png`."""
    if top_k < 1:
        raise UserError(f"--top-k must be >= 1, got {top_k}")
    if score_threshold is not None and not 0 <= score_threshold <= 1:
        raise UserError(f"--score-threshold must be in [0, 1], got {score_threshold}")
    loaded = [read_rgb(path) for path in images]      # every image readable before the model is built
    model, settings = load(source, weights, device=device, num_classes=num_classes, copy=copy)
    extra: dict[str, Any] = {}
    if out is not None and model.task != "classification":
        extra["overlay_paths"] = _overlay_paths(out, images)
    if score_threshold is not None:
        if model.task != "detection":
            raise UserError("--score-threshold applies to detection models only")
        extra["score_threshold"] = score_threshold
    results = get_task(model.task).predict(model, loaded, device=next(model.parameters()).device, top_k=top_k,
                                           cfg=settings, **extra)
    return [{"image": path, **result} for path, result in zip(images, results)]
