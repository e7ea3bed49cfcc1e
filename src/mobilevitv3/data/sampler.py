"""Batch samplers that hand the dataset `(index, height, width)`: the official variable-batch multi-scale sampler
(MobileViTv1/v3-v1 recipes) and a fixed-size one (MobileViTv2/v3-v2 recipes, dense tasks).

Variable batch: crop sizes `linspace(min, max, n)` made divisible by `check_scale`, plus the base size; the batch at
size s is `max(bs, bs * base^2 / s^2)` rounded to a multiple of the replica count, so each step costs about the
same. One (size, batch) is drawn per step from a generator seeded with `seed + epoch`: every DDP rank draws the same
sequence, while each rank reads its own disjoint slice of one shared permutation. The plan of an epoch is a pure
function of (seed, epoch), which makes the sampler resumable mid-epoch by skipping the steps already done.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler


def make_divisible(value: float, divisor: int) -> int:
    """TF-MobileNet rounding (nearest multiple, never below 90% of the value), as the official sampler uses."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def unpack(key: int | tuple[int, int, int], default: int | tuple[int, int]) -> tuple[int, int, int]:
    """`(index, height, width)` from a sampler key, or `(key, *default)` for a plain int index."""
    if isinstance(key, tuple):
        return key
    h, w = (default, default) if isinstance(default, int) else default
    return int(key), h, w


def scale_plan(base: int, batch_size: int, *, min_size: int, max_size: int, scales: int, check_scale: int,
               num_replicas: int = 1) -> list[tuple[int, int]]:
    """[(size, batch per rank)] of the variable-batch sampler, ascending by size."""
    raw = torch.linspace(min_size, max_size, scales).tolist() if scales > 1 else [base]
    sizes = sorted({make_divisible(s, check_scale) for s in raw} | {base})
    return [(s, make_divisible(max(batch_size, int(batch_size * base * base / (s * s))), num_replicas)
             if num_replicas > 1 else max(batch_size, int(batch_size * base * base / (s * s)))) for s in sizes]


class MultiScaleBatchSampler(Sampler[list[tuple[int, int, int]]]):
    """Yields lists of `(index, size, size)`; the same (size, batch) at each step on every rank.

    `plan=[(size, batch)]`: one pair for a fixed sampler, `scale_plan(...)` for the variable-batch one. The data set is
    padded (by repeating the permutation's head) to a multiple of the replica count, and a rank's last batch is filled
    from the start of its slice, so every step has the same batch size on every rank and DDP never waits on a rank.
    """

    def __init__(self, num_samples: int, plan: list[tuple[int, int]], *, num_replicas: int = 1, rank: int = 0,
                 seed: int = 0, shuffle: bool = True) -> None:
        if num_samples < 1:
            raise ValueError("the training set is empty")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} not in [0, {num_replicas})")
        self.num_samples, self.plan, self.shuffle = num_samples, list(plan), shuffle
        self.num_replicas, self.rank, self.seed = num_replicas, rank, seed
        self.epoch, self.start_step = 0, 0
        self._cache: tuple[int, list[list[tuple[int, int, int]]]] | None = None

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Select the epoch (reshuffles) and skip its first `start_step` batches (resuming mid-epoch)."""
        self.epoch, self.start_step = epoch, start_step

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "start_step": self.start_step, "seed": self.seed}

    def _batches(self) -> list[list[tuple[int, int, int]]]:
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.num_samples, generator=g) if self.shuffle else torch.arange(self.num_samples)
        padded = -(-self.num_samples // self.num_replicas) * self.num_replicas
        order = torch.cat([order, order[: padded - self.num_samples]]).tolist()
        mine = order[self.rank::self.num_replicas]          # disjoint, equal-length slices
        batches, pos = [], 0
        while pos < len(mine):
            size, bs = self.plan[int(torch.randint(len(self.plan), (1,), generator=g))]
            ids = mine[pos:pos + bs]
            while len(ids) < bs:                             # keep the batch size identical on all ranks
                ids += mine[: bs - len(ids)]
            batches.append([(i, size, size) for i in ids])
            pos += bs
        self._cache = (self.epoch, batches)
        return batches

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        yield from self._batches()[self.start_step:]

    def __len__(self) -> int:
        return max(0, len(self._batches()) - self.start_step)
