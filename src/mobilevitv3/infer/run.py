"""Evaluation and prediction from a model name + weights file, dispatched on `model.task` (the library side of
`mobilevitv3 eval` and `mobilevitv3 predict`).

Weights may be an official / timm / .safetensors file (preprocessing from the name's tag, e.g. BGR for v1-based
`.in1k`), or a checkpoint written by `mobilevitv3 train`, whose saved config gives the class count, class names and
evaluation sizes.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..errors import UserError
from ..models import create_model
from ..tasks import get_task
from ..train.checkpoints import saved_config
from ..train.config import TrainConfig, from_dict

log = logging.getLogger(__name__)


def imagenet_classes() -> list[str]:
    return (resources.files("mobilevitv3") / "data" / "imagenet_classes.txt").read_text().splitlines()


def load_model(name: str, weights: str, *, device: torch.device) -> tuple[nn.Module, TrainConfig]:
    """An eval-mode model with `class_names` when known, and the config to preprocess for it."""
    if not Path(weights).is_file():
        raise UserError(f"weights file not found: {weights}")
    saved, classes = saved_config(weights)
    cfg = replace(from_dict(saved), model=name, weights=None, resume=False) if saved else TrainConfig(model=name)
    model = create_model(name, num_classes=cfg.num_classes if saved else None, weights=weights)
    names = classes or (imagenet_classes() if model.identity.dataset == "imagenet" else None)
    if names and len(names) == model.num_classes:
        model.identity = model.identity.with_classes(model.num_classes, names)
    if classes:
        cfg = replace(cfg, task_options={**cfg.task_options, "classes": classes})
    return model.to(device).eval(), cfg


def evaluate(name: str, *, weights: str, data: str, batch_size: int = 64, workers: int = 2,
             device: str = "auto", amp: str = "none") -> dict[str, Any]:
    """The task's metrics of `name` with `weights` on the validation split of `data`."""
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       "cpu" if device == "auto" else device)
    model, cfg = load_model(name, weights, device=dev)
    cfg = replace(cfg, data=data)
    task = get_task(model.task)
    _, val = task.build_datasets(cfg, model, train=False)
    expected = getattr(model, "num_classes", None)
    found = getattr(val, "num_classes", expected)
    if expected is not None and found != expected:
        raise UserError(f"{data} has {found} class folders but {name} predicts {expected} classes; evaluation needs "
                        f"all the model's classes, in the same (sorted folder name) order")
    loader = DataLoader(val, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=task.collate)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    autocast = (lambda: torch.autocast(dev.type, dtype=dtype)) if dtype else (lambda: torch.autocast(
        dev.type, enabled=False))
    metrics = task.evaluate(model, loader, device=dev, autocast=autocast)
    return {"model": name, "weights": str(weights), "data": data, **metrics}


def predict(name: str, *, weights: str, images: list[str], top_k: int = 5, device: str = "auto",
            out: str | None = None) -> list[dict]:
    """One result per image file (classification: the top-k classes with probabilities). With `out`, segmentation
    and detection also draw their predictions into `out/<image stem>.png`."""
    from ..data.classification import load_rgb
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       "cpu" if device == "auto" else device)
    model, cfg = load_model(name, weights, device=dev)
    loaded = []
    for path in images:
        image = load_rgb(path) if Path(path).is_file() else None
        if image is None:
            raise UserError(f"cannot read image {path}" + ("" if Path(path).is_file() else " (no such file)"))
        loaded.append(image)
    extra = {}
    if out is not None and model.task != "classification":
        try:
            Path(out).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create output folder {out}: {e.strerror or e}") from None
        extra["overlay_paths"] = [Path(out) / f"{Path(p).stem}.png" for p in images]
    results = get_task(model.task).predict(model, loaded, device=dev, top_k=top_k, cfg=cfg, **extra)
    return [{"image": path, **result} for path, result in zip(images, results)]
