"""The training batch sampler the trainer uses: the official samplers of `official_sampler`, behind one interface.

`MultiScaleBatchSampler(n, plan, num_replicas=, rank=, seed=, kind=)` yields lists of `(index, height, width)`;
`set_epoch(epoch, start_step)` selects an epoch and skips the batches a resumed run already did. `plan` is
`scale_plan(...)` (the official variable-batch table) or one `(size, batch)` pair. `sampler_kind` maps a recipe's
`sampler` and the model family to the official sampler: `variable_batch` (v1 family ImageNet), `fixed` = the
family's batch sampler (v1: cumulative shuffle; v2: fresh shuffle, shard first under DDP).
"""
from __future__ import annotations

from collections.abc import Sequence

from .official_sampler import Kind, OfficialBatchSampler, make_divisible, variable_batch_plan

__all__ = ["MultiScaleBatchSampler", "make_divisible", "sampler_kind", "scale_plan", "unpack"]


def unpack(key: int | tuple[int, int, int], default: int | tuple[int, int]) -> tuple[int, int, int]:
    """`(index, height, width)` from a sampler key, or `(key, *default)` for a plain int index."""
    if isinstance(key, tuple):
        return key
    h, w = (default, default) if isinstance(default, int) else default
    return int(key), h, w


def scale_plan(base: int, batch_size: int, *, min_size: int, max_size: int, scales: int, check_scale: int,
               num_replicas: int = 1) -> list[tuple[int, int]]:
    """[(size, batch per rank)] of the official variable-batch sampler (square crops), ascending by size."""
    plan = variable_batch_plan(base, batch_size, min_size=min_size, max_size=max_size, scales=scales,
                               check_scale=check_scale, num_replicas=num_replicas)
    return [(h, b) for h, _, b in plan]


def sampler_kind(sampler: str, family: str) -> Kind:
    """The official sampler of a recipe's `sampler` setting for a model family."""
    if sampler == "variable_batch":
        return "variable"
    if sampler in ("v1_fixed", "v2_fixed"):
        return sampler  # type: ignore[return-value]
    return "v1_fixed" if family == "v1" else "v2_fixed"


class MultiScaleBatchSampler(OfficialBatchSampler):
    """The official sampler of `kind` (default: variable-batch for a multi-size plan, else the v2 batch sampler)."""

    def __init__(self, num_samples: int, plan: Sequence[tuple[int, ...]], *, num_replicas: int = 1, rank: int = 0,
                 seed: int = 0, shuffle: bool = True, kind: Kind | None = None) -> None:
        kind = kind or ("variable" if len(plan) > 1 else "v2_fixed")
        super().__init__(num_samples, plan, kind=kind, num_replicas=num_replicas, rank=rank, seed=seed,
                         shuffle=shuffle)
