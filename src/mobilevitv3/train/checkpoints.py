"""Training checkpoints: plain types and tensors only (`torch.load(weights_only=True)` reads them), written
atomically with `weights.atomic_save`.

`last.pt`  everything to resume: model, EMA, optimiser, schedule position, GradScaler, sampler position, epoch and
           step, best score, resolved config and class names. `epoch` is the epoch in progress (0-based) and `step`
           the batches already done in it; after a finished epoch that is (epoch + 1, 0).
`best.pt`  for inference: the better of raw/EMA weights at the best epoch under `model` (so `read_state_dict`
           picks them), with config, class names and that epoch's metrics.
"""
from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..weights import CheckpointError, atomic_save

FORMAT = 1


@dataclass
class Progress:
    epoch: int = 0          # epoch in progress, 0-based
    step: int = 0           # batches done in it
    iteration: int = 0      # optimiser steps since the start (drives the warm-up)
    best: float | None = None


def save_last(path: Path, *, model, ema, optimizer, scaler, progress: Progress, config: dict[str, Any],
              classes: list[str] | None) -> None:
    atomic_save({
        "format": FORMAT, "model": model.state_dict(), "ema": ema.state_dict() if ema is not None else None,
        "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
        "scheduler": {"iteration": progress.iteration, "epoch": progress.epoch},
        "sampler": {"epoch": progress.epoch, "start_step": progress.step},
        "epoch": progress.epoch, "step": progress.step, "iteration": progress.iteration, "best": progress.best,
        "config": config, "classes": classes,
    }, path)


def save_best(path: Path, *, weights: dict[str, torch.Tensor], source: str, epoch: int, metrics: dict[str, Any],
              config: dict[str, Any], classes: list[str] | None) -> None:
    atomic_save({"format": FORMAT, "model": weights, "source": source, "epoch": epoch, "metrics": metrics,
                 "config": config, "classes": classes}, path)


def load(path: Path) -> dict[str, Any]:
    """A checkpoint of ours, read safely (no pickled code)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"{path}: not a readable training checkpoint ({str(e).splitlines()[0]})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a training checkpoint of this library (no 'model' entry)")
    return state


def saved_config(path: str | Path) -> tuple[dict[str, Any] | None, list[str] | None]:
    """(config, class names) stored in one of our checkpoints, or (None, None) for any other weights file."""
    path = Path(path)
    if path.suffix == ".safetensors" or not path.is_file():
        return None, None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError):
        return None, None
    if isinstance(state, dict) and isinstance(state.get("config"), dict):
        return state["config"], state.get("classes")
    return None, None
