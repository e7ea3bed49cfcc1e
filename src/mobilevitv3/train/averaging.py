"""Checkpoint selection and averaging as the official trainers do it (training.md §4), as pure functions.

Two independent best streams, raw and EMA (`checkpoint_best.pt`, `checkpoint_ema_best.pt`): metrics rounded
(4 decimals, COCO mAP 5) and a tie counts as a new best; the EMA best starts from the raw best. A pool of
`checkpoint[_ema]_score_{v:.4f}.pt` files per stream (v1: written every epoch under the running best's name; v2:
only on a new best); once it holds more than k files the k best stay and are averaged (float64 mean) into
`checkpoint[_ema]_avg.pt`. Also the official float32 EMA update, whose rounded coefficients shrink the average.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

Family = Literal["v1", "v2"]
BEST_FILES = {"raw": "checkpoint_best.pt", "ema": "checkpoint_ema_best.pt"}
AVG_FILES = {"raw": "checkpoint_avg.pt", "ema": "checkpoint_ema_avg.pt"}
POOL_PREFIX = {"raw": "checkpoint_score_", "ema": "checkpoint_ema_score_"}


def pool_name(stream: str, value: float) -> str:
    return f"{POOL_PREFIX[stream]}{value:.4f}.pt"


def pool_value(stream: str, name: str) -> float | None:
    """The score in a pool file name of `stream`, or None for any other file."""
    prefix = POOL_PREFIX[stream]
    if not (name.startswith(prefix) and name.endswith(".pt")):
        return None
    try:
        return float(name[len(prefix):-3])
    except ValueError:
        return None


def is_better(value: float, best: float, *, higher_is_better: bool) -> bool:
    """The official comparison: ties count as a new best."""
    return value >= best if higher_is_better else value <= best


@dataclass
class StreamUpdate:
    is_best: bool
    best: float                      # the stream's running best after this epoch
    write: str | None                # pool file to (over)write with this epoch's state
    delete: list[str] = field(default_factory=list)   # pool files pruned
    average: list[str] = field(default_factory=list)  # pool files to average into the avg file (empty: none)


@dataclass
class BestTracker:
    """Both streams' running best. `start()` at the start of a run (or resume) copies the raw best into the EMA
    stream, as the official engine does; `update()` once per epoch and stream, after validation."""
    family: Family
    higher_is_better: bool = True
    k: int = 5
    decimals: int = 4                # v2 `coco_map`: 5
    raw: float | None = None
    ema: float | None = None

    def __post_init__(self) -> None:
        if self.raw is None:
            self.raw = 0.0 if self.higher_is_better else math.inf
        if self.ema is None:
            self.start()

    def start(self) -> None:
        self.ema = self.raw

    def update(self, stream: Literal["raw", "ema"], metric: float, pool: Sequence[str]) -> StreamUpdate:
        """Decide for one stream; `pool` lists the stream's pool files present now (names only)."""
        value = round(metric, self.decimals)
        best = getattr(self, stream)
        is_best = is_better(value, best, higher_is_better=self.higher_is_better)
        if is_best:
            best = value
        setattr(self, stream, best)
        if self.family == "v1":
            write = pool_name(stream, best)      # every epoch, under the running best's name
        else:
            write = pool_name(stream, value) if is_best else None
        names = sorted(set(pool) | ({write} if write else set()))
        delete, keep = prune(stream, names, k=self.k, higher_is_better=self.higher_is_better)
        return StreamUpdate(is_best, best, write, delete, keep if delete else [])


def prune(stream: str, names: Sequence[str], *, k: int, higher_is_better: bool) -> tuple[list[str], list[str]]:
    """(files to delete, files kept) when more than k pool files exist; ([], names) otherwise."""
    scored = [(pool_value(stream, n), n) for n in names]
    scored = [(v, n) for v, n in scored if v is not None]
    if len(scored) <= k:
        return [], [n for _, n in scored]
    scored.sort(key=lambda vn: vn[0], reverse=higher_is_better)
    return [n for _, n in scored[k:]], [n for _, n in scored[:k]]


def average_state_dicts(states: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """The float64 mean of state dicts, cast back to each entry's dtype (integer buffers truncate toward zero)."""
    if not states:
        raise ValueError("nothing to average")
    out = {}
    for key, first in states[0].items():
        total = torch.zeros_like(first, dtype=torch.float64)
        for state in states:
            total += state[key].to(torch.float64)
        mean = total / len(states)
        out[key] = mean.trunc().to(first.dtype) if not first.is_floating_point() else mean.to(first.dtype)
    return out


@torch.no_grad()
def official_ema_update(ema: Mapping[str, Tensor], model: Mapping[str, Tensor], momentum: float) -> None:
    """ema <- ema * (1 - m) + m * model over every state-dict entry, computed in the entry's dtype as the official
    code does (float32 rounds both coefficients: their sum is 1 - 2.3e-8 at m = 0.0005); integer buffers are
    computed in float and truncated toward zero. Not `torch.optim.swa_utils`' EMA: it lerps (one rounding, the
    exact 1 - m): the official EMA checksum (sum ~7e3) drifts ~1.6e-4 a step from a lerp's (training.md §11)."""
    for key, target in ema.items():
        value = model[key].detach()
        if target.is_floating_point():
            target.mul_(1 - momentum).add_(value.to(target.dtype) * momentum)   # two roundings, as official
        else:
            target.copy_((target.double() * (1 - momentum) + value.double() * momentum).trunc().to(target.dtype))


def keep_official_files(out: Path, tracker: BestTracker, stream: Literal["raw", "ema"], metric: float,
                        weights: Mapping[str, Tensor], save: Callable[[Path, Mapping[str, Tensor]], None],
                        load: Callable[[Path], Mapping[str, Tensor]]) -> StreamUpdate:
    """One epoch's official files of one stream in `out`: the best file on a new best, the pool file, pruning and,
    after pruning, the average of the k kept files. `save(path, weights)` writes atomically; `load(path)` gives a
    saved file's weights."""
    pool = sorted(p.name for p in out.glob(f"{POOL_PREFIX[stream]}*.pt"))
    update = tracker.update(stream, metric, pool)
    if update.is_best:
        save(out / BEST_FILES[stream], weights)
    if update.write:
        save(out / update.write, weights)
    for name in update.delete:
        (out / name).unlink(missing_ok=True)
    if update.average:
        save(out / AVG_FILES[stream], average_state_dicts([load(out / name) for name in update.average]))
    return update
