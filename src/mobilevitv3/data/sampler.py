"""The training batch samplers: the official samplers of both families, reproduced sequence for sequence
(training.md §7), behind one class, `MultiScaleBatchSampler(n, plan, num_replicas=, rank=, seed=, kind=)`. It
yields lists of `(index, height, width)`; `set_epoch(epoch, start_step)` selects an epoch and skips the batches a
resumed run already did. `plan` is `scale_plan(...)` / `variable_batch_plan(...)` (the official variable-batch
table) or one `(size, batch)` pair. `sampler_kind` maps a recipe's `sampler` and the model family to a kind:

- `variable`: the v1 family's variable-batch sampler. Python's Mersenne Twister seeded with the epoch number shuffles
  the index list and the (h, w, batch) table *in place*, so the order compounds over epochs; each batch draws its
  (h, w, batch) with `choice`, and a short last batch is filled from the head of the (rank's) list.
- `v1_fixed`: the v1 `batch_sampler` (v1 dense recipes): the same cumulative shuffle, consecutive batches; the last
  one is short on one process and padded from the rank's head under DDP.
- `v2_fixed`: the v2 `batch_sampler`: a fresh shuffle per epoch; under DDP each rank keeps a fixed shard of the
  unshuffled list and shuffles it; short last batch on one process, padded under DDP.
The official samplers seed with the epoch alone; `seed` 0 gives exactly their sequence, other seeds a different
one. A sequence is a pure function of (seed, epoch): resuming replays the earlier epochs' shuffles (cheap next to
an epoch of training) and skips the batches already done, so a resumed run sees the uninterrupted run's order
(the official resume restarts the cumulative shuffle from the identity instead).
"""
from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np
from torch.utils.data import Sampler

from ..layers import make_divisible

__all__ = ["Kind", "MultiScaleBatchSampler", "sampler_kind", "scale_plan", "unpack", "variable_batch_plan"]

log = logging.getLogger(__name__)
Kind = Literal["variable", "v1_fixed", "v2_fixed"]
Batch = list[tuple[int, int, int]]   # (index, height, width) per sample


def unpack(key: int | tuple[int, int, int], default: int | tuple[int, int]) -> tuple[int, int, int]:
    """`(index, height, width)` from a sampler key, or `(key, *default)` for a plain int index."""
    if isinstance(key, tuple):
        return key
    h, w = (default, default) if isinstance(default, int) else default
    return int(key), h, w


def sampler_kind(sampler: str, family: str) -> Kind:
    """The official sampler of a recipe's `sampler` setting for a model family (`fixed`: the family's own)."""
    if sampler == "variable_batch":
        return "variable"
    if sampler in ("v1_fixed", "v2_fixed"):
        return sampler  # type: ignore[return-value]
    return "v1_fixed" if family == "v1" else "v2_fixed"


def variable_batch_plan(base: tuple[int, int] | int, batch_size: int, *, min_size: tuple[int, int] | int = 160,
                        max_size: tuple[int, int] | int = 320, scales: int = 5, check_scale: int = 32,
                        num_replicas: int = 1) -> list[tuple[int, int, int]]:
    """The official (h, w, batch) table, sorted ascending. Sizes: linspace(min, max, scales) plus the base size,
    each made divisible by `check_scale`; batch: max(bs0, int(round(bs0 * base area / area, 2))) made divisible by
    the replica count (`batch_size` is the per-process bs0)."""
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    (bh, bw), (lo_h, lo_w), (hi_h, hi_w) = pair(base), pair(min_size), pair(max_size)
    heights = [float(v) for v in np.linspace(lo_h, hi_h, scales)]
    widths = [float(v) for v in np.linspace(lo_w, hi_w, scales)]
    if bh not in heights:
        heights.append(bh)
    if bw not in widths:
        widths.append(bw)
    sizes = {(make_divisible(h, check_scale), make_divisible(w, check_scale)) for h, w in zip(heights, widths)}
    pixels = bh * bw * batch_size
    plan = set()
    for h, w in sizes:
        bs = max(batch_size, int(round(pixels / (h * w), 2)))
        plan.add((h, w, make_divisible(bs, max(1, num_replicas))))
    return sorted(plan)


def scale_plan(base: int, batch_size: int, *, min_size: int, max_size: int, scales: int, check_scale: int,
               num_replicas: int = 1) -> list[tuple[int, int]]:
    """[(size, batch per rank)] of the official variable-batch sampler (square crops), ascending by size."""
    plan = variable_batch_plan(base, batch_size, min_size=min_size, max_size=max_size, scales=scales,
                               check_scale=check_scale, num_replicas=num_replicas)
    return [(h, b) for h, _, b in plan]


def _padded_ids(num_samples: int, world: int) -> list[int]:
    """0..N-1 plus its first ids so that the length is a multiple of the replica count."""
    total = math.ceil(num_samples / world) * world
    ids = list(range(num_samples))
    return ids + ids[: total - num_samples]


def _cut(ids: Sequence[int], sizes: Iterator[tuple[int, int, int]], *, pad: bool) -> list[Batch]:
    """Consecutive batches of `ids`, one (h, w, batch) from `sizes` per batch; a short last batch is padded with
    the head of `ids` when `pad`."""
    out, start = [], 0
    while start < len(ids):
        h, w, bs = next(sizes)
        chunk = list(ids[start:start + bs])
        if pad and len(chunk) < bs:
            chunk += list(ids[: bs - len(chunk)])
        elif len(chunk) == 1 < len(ids):   # a 1-sample batch would stop BatchNorm (the official run crashes)
            chunk += list(ids[:1])
        out.append([(i, h, w) for i in chunk])
        start += bs
    return out


class MultiScaleBatchSampler(Sampler[Batch]):
    """Yields lists of `(index, height, width)`; the same (h, w, batch) at each step on every rank.

    `plan`: [(h, w, batch)] (`variable_batch_plan`) or [(size, batch)] pairs; a fixed kind uses its one entry.
    `kind`: the official sampler (default: `variable` for a multi-size plan, else the v2 batch sampler).
    """

    def __init__(self, num_samples: int, plan: Sequence[tuple[int, ...]], *, kind: Kind | None = None,
                 num_replicas: int = 1, rank: int = 0, seed: int = 0, shuffle: bool = True) -> None:
        kind = kind or ("variable" if len(plan) > 1 else "v2_fixed")
        if num_samples < 1:
            raise ValueError("the training set is empty")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} not in [0, {num_replicas})")
        self.plan = sorted((p[0], p[0], p[1]) if len(p) == 2 else tuple(p) for p in plan)
        if kind != "variable" and len(self.plan) != 1:
            raise ValueError(f"a {kind} sampler takes one (size, batch), got {len(self.plan)}")
        self.num_samples, self.kind, self.shuffle = num_samples, kind, shuffle
        self.num_replicas, self.rank, self.seed = num_replicas, rank, seed
        self.epoch, self.start_step = 0, 0
        # cumulative state of the v1 samplers after `_state_epoch` epochs (-1: the constructor's)
        self._state: tuple[int, list[int], list[tuple[int, int, int]]] = (-1, _padded_ids(num_samples, num_replicas),
                                                                          list(self.plan))
        self._cache: tuple[int, list[Batch]] | None = None

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Select the epoch and skip its first `start_step` batches (resuming mid-epoch)."""
        self.epoch, self.start_step = epoch, start_step

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "start_step": self.start_step, "seed": self.seed}

    def _rng(self, epoch: int) -> random.Random:
        # str seeds hash with SHA-512: the same stream in every process and Python run
        return random.Random(epoch if self.seed == 0 else f"{self.seed}:{epoch}")

    def _cumulative(self, epoch: int) -> tuple[random.Random, list[int], list[tuple[int, int, int]]]:
        """The v1 index list and table after epoch `epoch`'s in-place shuffles, and the RNG as they leave it."""
        done, ids, table = self._state
        if done >= epoch:   # going back in time: replay from the constructor's state
            done, ids, table = -1, _padded_ids(self.num_samples, self.num_replicas), list(self.plan)
        if epoch - done > 1:
            log.info("sampler: replaying the shuffles of epochs %d..%d", done + 1, epoch - 1)
        rng = self._rng(done)
        for e in range(done + 1, epoch + 1):
            rng = self._rng(e)
            rng.shuffle(ids)
            rng.shuffle(table)
        self._state = (epoch, ids, table)
        return rng, list(ids), list(table)

    def _batches(self) -> list[Batch]:
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        world, rank, ddp = self.num_replicas, self.rank, self.num_replicas > 1
        if not self.shuffle:
            ids = _padded_ids(self.num_samples, world)[rank::world]
            batches = _cut(ids, iter(lambda: self.plan[0], None), pad=ddp or self.kind == "variable")
        elif self.kind == "v2_fixed":
            ids = _padded_ids(self.num_samples, world)[rank::world]   # shard first, then shuffle within the rank
            self._rng(self.epoch).shuffle(ids)
            batches = _cut(ids, iter(lambda: self.plan[0], None), pad=ddp)
        else:
            rng, ids, table = self._cumulative(self.epoch)
            ids = ids[rank::world]
            if self.kind == "variable":
                batches = _cut(ids, iter(lambda: rng.choice(table), None), pad=True)
            else:
                batches = _cut(ids, iter(lambda: table[0], None), pad=ddp)
        self._cache = (self.epoch, batches)
        return batches

    def __iter__(self) -> Iterator[Batch]:
        yield from self._batches()[self.start_step:]

    def __len__(self) -> int:
        return max(0, len(self._batches()) - self.start_step)
