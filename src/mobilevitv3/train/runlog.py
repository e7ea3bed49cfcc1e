"""What a run leaves in its folder besides checkpoints: `metrics.jsonl` (one JSON object per epoch), `config.yaml`
(the resolved TrainConfig) and `curves.png` (loss and accuracy per epoch). Every write is atomic or an fsynced
append, so a killed run never leaves a half-written line or image."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError
from ..weights import atomic_write, raise_if_no_space


def write_config(config: dict[str, Any], path: Path) -> None:
    atomic_write(path, lambda f: f.write(yaml.safe_dump(config, sort_keys=False).encode()))


def read_config(path: Path) -> dict[str, Any]:
    """A run's config.yaml as written by `write_config`; anything else is one line."""
    try:
        values = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise UserError(f"{path}: cannot read the run's config ({str(e).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise UserError(f"{path}: not a run config (a mapping of TrainConfig fields)")
    return values


class MetricsLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def records(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:   # a line cut by a kill before the fsync: drop it
                continue
        return out

    def keep_epochs_below(self, epoch: int) -> None:
        """Drop the records of epochs >= `epoch` (1-based): on resume they are trained again, never duplicated."""
        kept = [r for r in self.records() if r.get("epoch", math.inf) < epoch]
        atomic_write(self.path, lambda f: f.write("".join(json.dumps(r) + "\n" for r in kept).encode()))

    def append(self, record: dict[str, Any]) -> None:
        """One JSON line; a non-finite number (a NaN mIoU of an empty split) is written as null, never as NaN."""
        clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(clean, allow_nan=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise_if_no_space(e, self.path)
            raise


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def plot_curves(records: list[dict[str, Any]], path: Path, *, metric: str = "top1") -> None:
    """Loss (train, val) and the main metric (raw and EMA weights) per epoch. A bare `Figure` with its own Agg
    canvas: pyplot's global backend and figure list (a notebook user's) are never touched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = [r["epoch"] for r in records]
    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    ax_loss, ax_metric = fig.subplots(1, 2)
    for key, label in (("train_loss", "train"), ("val_loss", "val")):
        if any(key in r for r in records):
            ax_loss.plot(epochs, [_num(r.get(key)) for r in records], marker=".", label=label)
    for key, label in ((f"val_{metric}", "model"), (f"ema_val_{metric}", "EMA")):
        if any(key in r for r in records):
            ax_metric.plot(epochs, [_num(r.get(key)) for r in records], marker=".", label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_metric.set(xlabel="epoch", ylabel=f"val {metric}", title=f"validation {metric}")
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
