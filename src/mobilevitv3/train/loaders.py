"""The trainer's data loaders: the training set through the (multi-scale) batch sampler, the validation set sharded
across DDP ranks without padding, so every metric counts each image exactly once."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ..data.sampler import MultiScaleBatchSampler, sampler_kind, scale_plan
from . import distributed
from .config import TrainConfig
from .seeding import SeededBatches, SeededCollate, SeededSamples
from .signals import ignore_in_worker


@dataclass
class Loaders:
    train: DataLoader
    val: DataLoader
    sampler: MultiScaleBatchSampler


def build_loaders(cfg: TrainConfig, task: Any, train_set: Dataset, val_set: Dataset, ctx: distributed.Dist, *,
                  family: str) -> Loaders:
    """`family` ('v1' or 'v2', the model identity's) picks the official batch sampler of `--sampler fixed`."""
    if cfg.sampler == "variable_batch":
        plan = scale_plan(cfg.image_size, cfg.batch_size, min_size=cfg.sampler_min_size,
                          max_size=cfg.sampler_max_size, scales=cfg.sampler_scales,
                          check_scale=cfg.sampler_check_scale, num_replicas=ctx.world)
    else:
        plan = [(cfg.image_size, cfg.batch_size)]
    sampler = MultiScaleBatchSampler(len(train_set), plan, num_replicas=ctx.world, rank=ctx.rank, seed=cfg.seed,
                                     kind=sampler_kind(cfg.sampler, family))
    common = {"num_workers": cfg.workers, "pin_memory": ctx.device.type == "cuda",
              "worker_init_fn": ignore_in_worker if cfg.workers else None, "persistent_workers": cfg.workers > 0}
    # Per-sample seeds (train/seeding.py): a resumed run, or one with another worker count, sees the same batches.
    train = DataLoader(SeededSamples(train_set), batch_sampler=SeededBatches(sampler, cfg.seed, ctx.rank),
                       collate_fn=SeededCollate(task.train_collate(cfg)),
                       generator=torch.Generator().manual_seed(cfg.seed), **common)
    shard = Subset(val_set, range(ctx.rank, len(val_set), ctx.world))   # disjoint, no padding: exact metrics
    val = DataLoader(shard, batch_size=cfg.eval_batch_size or cfg.batch_size, shuffle=False,
                     collate_fn=task.collate, **common)
    return Loaders(train, val, sampler)


def batch_len(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return batch.shape[0] if batch.ndim else 1
    items = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else ()
    for item in items:
        if (n := batch_len(item)):
            return n
    return 0
