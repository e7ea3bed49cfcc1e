"""Data loaders and the inner loop of one training epoch (forward, finite check, accumulation, clip, step, EMA).

Every step all ranks agree, in one all-reduce, on whether anyone saw a non-finite loss or a Ctrl-C, so ranks stop
together and DDP never hangs on a rank that left.
"""
from __future__ import annotations

import contextlib
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ..data.sampler import MultiScaleBatchSampler, scale_plan
from . import distributed
from .config import TrainConfig

if TYPE_CHECKING:
    from .engine import Stop, Trainer


@dataclass
class Loaders:
    train: DataLoader
    val: DataLoader
    sampler: MultiScaleBatchSampler


def _worker_init(_: int) -> None:
    # Ctrl-C reaches the whole process group; only the main process handles it (and saves), workers carry on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def build_loaders(cfg: TrainConfig, task: Any, train_set: Dataset, val_set: Dataset,
                  ctx: distributed.Dist) -> Loaders:
    if cfg.sampler == "variable_batch":
        plan = scale_plan(cfg.image_size, cfg.batch_size, min_size=cfg.sampler_min_size,
                          max_size=cfg.sampler_max_size, scales=cfg.sampler_scales,
                          check_scale=cfg.sampler_check_scale, num_replicas=ctx.world)
    else:
        plan = [(cfg.image_size, cfg.batch_size)]
    sampler = MultiScaleBatchSampler(len(train_set), plan, num_replicas=ctx.world, rank=ctx.rank, seed=cfg.seed)
    common = {"num_workers": cfg.workers, "pin_memory": ctx.device.type == "cuda",
              "worker_init_fn": _worker_init if cfg.workers else None, "persistent_workers": cfg.workers > 0}
    train = DataLoader(train_set, batch_sampler=sampler, collate_fn=task.train_collate(cfg), **common)
    shard = Subset(val_set, range(ctx.rank, len(val_set), ctx.world))   # disjoint, no padding: exact metrics
    val = DataLoader(shard, batch_size=cfg.eval_batch_size or cfg.batch_size, shuffle=False,
                     collate_fn=task.collate, **common)
    return Loaders(train, val, sampler)


def _batch_len(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return batch.shape[0] if batch.ndim else 1
    items = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else ()
    for item in items:
        if (n := _batch_len(item)):
            return n
    return 0


def _optimizer_step(t: "Trainer") -> None:
    if t.cfg.grad_clip:
        t.scaler.unscale_(t.optimizer)      # clip the true gradients, not the fp16-scaled ones
        torch.nn.utils.clip_grad_norm_(t.model.parameters(), t.cfg.grad_clip)
    t.scaler.step(t.optimizer)
    t.scaler.update()
    t.optimizer.zero_grad(set_to_none=True)
    if t.ema is not None:
        t.ema.update(t.model)
    t.progress.iteration += 1


def _non_finite(t: "Trainer", loss: torch.Tensor) -> Exception:
    from .engine import NonFiniteLoss
    last = t.out / "last.pt"
    kept = f"{last} (from before epoch {t.progress.epoch + 1}) is left as it was" if last.is_file() \
        else "no checkpoint had been written yet"
    return NonFiniteLoss(f"non-finite loss ({float(loss.detach()):.4g}) at epoch {t.progress.epoch + 1}, step "
                         f"{t.progress.step + 1}; training stopped, {kept}")


def train_steps(t: "Trainer", stop: "Stop") -> dict[str, float] | None:
    """One epoch from `t.progress.step`; the epoch's mean stats, or None when stopped by Ctrl-C."""
    from .engine import progress_bar
    cfg, p, ctx = t.cfg, t.progress, t.ctx
    torch.manual_seed(cfg.seed * 1_000_003 + p.epoch * 1009 + p.step * 7 + ctx.rank)   # reproducible epochs
    t.loaders.sampler.set_epoch(p.epoch, p.step)
    total = p.step + len(t.loaders.sampler)
    if cfg.max_steps_per_epoch:
        total = min(total, cfg.max_steps_per_epoch)
    t.model.train()
    sums: dict[str, float] = {}
    steps = images = 0
    lr, start = 0.0, time.perf_counter()
    bar = progress_bar(t.loaders.train, total=total - p.step, desc=f"epoch {p.epoch + 1}/{cfg.epochs}",
                       enabled=ctx.main)
    for batch in bar:
        if p.step >= total:
            break
        lr = t.schedule.apply(t.optimizer, p.iteration, p.epoch)
        batch = t.task.to_device(batch, ctx.device, channels_last=cfg.channels_last)
        boundary = (p.step + 1) % cfg.accum_steps == 0 or p.step + 1 == total
        with contextlib.nullcontext() if boundary or not ctx.enabled else t.ddp.no_sync():
            with t.autocast():
                loss, stats = t.task.training_loss(t.ddp, batch, cfg)
            stop_now, bad = distributed.any_rank(stop.requested, not bool(torch.isfinite(loss)), ctx=ctx)
            if bad:
                raise _non_finite(t, loss)
            t.scaler.scale(loss / cfg.accum_steps).backward()
        if boundary:
            _optimizer_step(t)
        p.step, steps, images = p.step + 1, steps + 1, images + _batch_len(batch)
        for k, v in {"train_loss": float(loss.detach()), **stats}.items():
            sums[k] = sums.get(k, 0.0) + v
        if ctx.main and steps % 10 == 0:
            bar.set_postfix(loss=f"{sums['train_loss'] / steps:.3f}", lr=f"{lr:.2e}", refresh=False)
        if stop_now and boundary:
            return None
    bar.close()
    seconds = time.perf_counter() - start
    counts = distributed.sum_ranks({k: v for k, v in sums.items() if k.endswith("_count")}, ctx=ctx)
    out = {"train_loss": None} | {k: v / max(steps, 1) for k, v in sums.items()} | counts
    return out | {"lr": lr, "images_per_s": round(images * ctx.world / max(seconds, 1e-9), 1),
                  "epoch_time_s": round(seconds, 1)}
