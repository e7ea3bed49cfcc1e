"""The official learning-rate schedule and gradient-accumulation rules (training.md §2, §3, §8).

lr(it, epoch): linear warm-up over the first `warmup_iterations` counter values, then cosine *per epoch*
(constant within an epoch, min_lr never reached); per parameter group round(max(0, lr) * multiplier, 8), the
multiplier applied before the rounding. The counter is global: v1 counts micro-batches, v2 optimiser steps.
Accumulation sums the micro-batch gradients (no division) and steps when (batch index + 1) % accum_freq == 0; the
epoch's leftover micro-batches are dropped by the next epoch's zero_grad.
"""
from __future__ import annotations

import math
from typing import Literal, Sequence


def official_lr(iteration: int, epoch: int, *, max_lr: float, min_lr: float, epochs: int,
                warmup_iterations: int = 0, warmup_init_lr: float = 0.0,
                scheduler: Literal["cosine", "fixed"] = "cosine") -> float:
    """The unrounded lr of the official cosine (or fixed) scheduler at a counter value and 0-based epoch."""
    if warmup_iterations > 0 and iteration < warmup_iterations:
        return warmup_init_lr + iteration * (max_lr - warmup_init_lr) / warmup_iterations
    if scheduler == "fixed":
        return max_lr
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * epoch / epochs))


def group_lrs(lr: float, multipliers: Sequence[float]) -> list[float]:
    """Each group's lr as the official base scheduler sets it: multiply first, then round to 8 decimals."""
    return [round(max(0.0, lr) * m, 8) for m in multipliers]


def schedule_counter(family: Literal["v1", "v2"], *, micro_batches: int, optimizer_steps: int) -> int:
    """The counter the warm-up reads: v1 advances it per micro-batch, v2 per optimiser step."""
    return micro_batches if family == "v1" else optimizer_steps


def is_step_boundary(batch_index: int, accum_freq: int) -> bool:
    """Whether the optimiser steps after batch `batch_index` (0-based, within the epoch). There is no step for
    the epoch's last (num_batches % accum_freq) micro-batches: their gradients are discarded."""
    return (batch_index + 1) % accum_freq == 0

