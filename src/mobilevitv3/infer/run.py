"""Evaluation and prediction from files (the library side of `mobilevitv3 eval` and `mobilevitv3 predict`).

A model comes from one of our self-describing checkpoints alone (train's best.pt/last.pt, convert's .safetensors:
architecture, tag, class count and names, preprocessing and, from train, the evaluation sizes), or from a name plus
any weights file (official, timm, ours), the class count then taken from the file unless `num_classes` says it.
Which copy of a file holding raw and EMA weights is used is `copy` ('model' unless 'ema'), and the log says which.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data.images import read_rgb
from ..errors import UserError, device_from
from ..models import create_model, load_model as load_described
from ..tasks import get_task
from ..train.checkpoints import saved_config
from ..train.config import TrainConfig, from_dict
from ..weights import check_file
from .runtime import is_runtime_file, runtime_model_and_config

log = logging.getLogger(__name__)
WEIGHT_SUFFIXES = (".pt", ".pth", ".pt2", ".bin", ".safetensors", ".ckpt")


def imagenet_classes() -> list[str]:
    return (resources.files("mobilevitv3") / "data" / "imagenet_classes.txt").read_text().splitlines()


def is_file_argument(source: str) -> bool:
    """`source` names a file (a checkpoint) rather than an architecture."""
    return Path(source).suffix in WEIGHT_SUFFIXES or Path(source).exists()


def load_model(source: str, weights: str | None = None, *, device: torch.device | str = "cpu",
               num_classes: int | None = None, copy: Literal["model", "ema"] | None = None
               ) -> tuple[nn.Module, TrainConfig]:
    """An eval-mode model (identity with class names when known) and the config to preprocess for it.
    `source`: an architecture name (then `weights` is required) or one of our checkpoints (then `weights` is
    not given)."""
    if is_runtime_file(source):   # an exported / quantized .onnx or .pte: runs in its own runtime
        return runtime_model_and_config(source, weights=weights, num_classes=num_classes, copy=copy)
    if is_file_argument(source):
        if weights is not None:
            raise UserError(f"{source} is a checkpoint: give either a checkpoint or NAME --weights FILE, not both")
        weights = str(check_file(source, "checkpoint"))
        model = load_described(weights, copy=copy, num_classes=num_classes)
    else:
        if weights is None:
            raise UserError(f"{source}: --weights FILE is needed with an architecture name (or give a checkpoint of "
                            f"this project alone)")
        check_file(weights)
        model = create_model(source, num_classes=num_classes, weights=weights, copy=copy)
    saved, _ = saved_config(weights)
    cfg = replace(from_dict(saved), weights=None, resume=False) if saved else TrainConfig(model=model.name)
    ident = model.identity
    if not ident.class_names and ident.dataset == "imagenet" and model.num_classes == 1000:
        model.identity = ident.with_classes(1000, imagenet_classes())
    if model.identity.class_names:
        cfg = replace(cfg, task_options={**cfg.task_options, "classes": list(model.identity.class_names)})
    return model.to(device_from(device) if isinstance(device, str) else device).eval(), cfg


def evaluate(source: str, *, weights: str | None = None, data: str, batch_size: int = 64, workers: int = 2,
             device: str = "auto", amp: str = "none", num_classes: int | None = None,
             copy: Literal["model", "ema"] | None = None) -> dict[str, Any]:
    """The task's metrics of the model on the validation split of `data`."""
    dev = device_from(device)
    if batch_size < 1 or workers < 0:
        raise UserError(f"--batch-size must be >= 1 and --workers >= 0, got {batch_size} and {workers}")
    model, cfg = load_model(source, weights, device=dev, num_classes=num_classes, copy=copy)
    cfg = replace(cfg, data=data)
    task = get_task(model.task)
    _, val = task.build_datasets(cfg, model, train=False)
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
    model, cfg = load_model(source, weights, device=device, num_classes=num_classes, copy=copy)
    extra: dict[str, Any] = {}
    if out is not None and model.task != "classification":
        extra["overlay_paths"] = _overlay_paths(out, images)
    if score_threshold is not None:
        if model.task != "detection":
            raise UserError("--score-threshold applies to detection models only")
        extra["score_threshold"] = score_threshold
    results = get_task(model.task).predict(model, loaded, device=next(model.parameters()).device, top_k=top_k,
                                           cfg=cfg, **extra)
    return [{"image": path, **result} for path, result in zip(images, results)]
