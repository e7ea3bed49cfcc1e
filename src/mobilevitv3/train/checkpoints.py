"""Training checkpoints: plain types and tensors only (`torch.load(weights_only=True)` reads them), written
atomically with `weights.atomic_save`.

`last.pt`  everything to resume: model, EMA, optimiser, GradScaler, epoch and step (they give the schedule and
           sampler positions), best score, the number of processes (`world`) and each one's random generators (`rng`,
           in rank order), the data fingerprint, the resolved config and the model's identity (architecture, tag,
           class count and names, preprocessing). `epoch` is the
           epoch in progress (0-based) and `step` the batches already done in it; after a finished epoch that is
           (epoch + 1, 0).
`best.pt`  for inference: the best weights under `model`, with identity, config and that epoch's metrics.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..weights import CheckpointError, atomic_save, load_pickle

FORMAT = 3   # 2: `identity` (what model the file holds), `rng`, `data_fingerprint`; 3: `world`, `rng` per rank


@dataclass
class Progress:
    epoch: int = 0          # epoch in progress, 0-based
    step: int = 0           # batches done in it
    iteration: int = 0      # the lr counter since the start (optim.advances_counter: v1 batches, v2 steps)
    best: float | None = None


def save_last(path: Path, *, model, ema, optimizer, scaler, progress: Progress, config: dict[str, Any],
              identity: dict[str, Any], rng: list[dict[str, Any]], data_fingerprint: dict[str, Any]) -> None:
    atomic_save({
        "format": FORMAT, "identity": identity, "model": model.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
        "epoch": progress.epoch, "step": progress.step, "iteration": progress.iteration, "best": progress.best,
        "world": len(rng), "rng": rng, "data_fingerprint": data_fingerprint, "config": config,
    }, path)


def save_best(path: Path, *, weights: dict[str, torch.Tensor], source: str, epoch: int, metrics: dict[str, Any],
              config: dict[str, Any], identity: dict[str, Any]) -> None:
    atomic_save({"format": FORMAT, "identity": identity, "model": weights, "source": source, "epoch": epoch,
                 "metrics": metrics, "config": config}, path)


def load(path: Path) -> dict[str, Any]:
    """A training checkpoint of ours, read safely (no pickled code); a format-2 file holds rank 0's random state
    alone and no process count (`world` None)."""
    state = load_pickle(path)
    if not isinstance(state, dict) or "model" not in state or "optimizer" not in state:
        raise CheckpointError(f"{path}: not a training checkpoint of this library (no model/optimizer state)")
    if isinstance(state.get("rng"), dict):
        state["rng"], state["world"] = [state["rng"]], None
    return state


def saved_config(path: str | Path) -> tuple[dict[str, Any] | None, list[str] | None]:
    """(config, class names) stored in one of our checkpoints, or (None, None) for any other weights file."""
    path = Path(path)
    if path.suffix == ".safetensors" or not path.is_file():
        return None, None
    try:
        state = load_pickle(path)
    except CheckpointError:
        return None, None
    if isinstance(state, dict) and isinstance(state.get("config"), dict):
        names = (state.get("identity") or {}).get("class_names")
        return state["config"], names
    return None, None
