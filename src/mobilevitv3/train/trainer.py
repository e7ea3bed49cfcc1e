"""The task-agnostic training loop: DDP, AMP, gradient accumulation and clipping, EMA, official lr schedule,
atomic checkpoints every epoch and on a stop signal (train/signals.py), metrics.jsonl + curves.png, best.pt by the
task's main metric.

`train(cfg)` is the library entry point; `mobilevitv3 train` and `torchrun -m mobilevitv3 train` call it.
"""
from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..errors import UserError
from ..export.pt2e import QATModel
from ..hub import save_run
from ..models import create_model, identity_record
from ..tasks import evaluated_identity, get_task
from ..weights import read_weights
from . import checkpoints, distributed
from .averaging import BestTracker, is_better, keep_official_files
from .checkpoints import Progress
from .config import TrainConfig
from .ema import ModelEMA
from .loaders import Loaders, batch_len, build_loaders
from .optim import LRSchedule, advances_counter, build_optimizer, is_step_boundary, param_groups
from .run_folder import RunFolder, check_resume, check_shared, fingerprint, write_owner
from .runlog import MetricsLog, plot_curves, read_config, write_config
from .seeding import mix, rng_state, set_rng_state
from .signals import Signals, Stopped

log = logging.getLogger(__name__)
PLOT_EVERY_S = 30.0


class NonFiniteLoss(UserError):
    """The loss became NaN/inf: training stops and the last good checkpoint is left as it was."""


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train as configured (one process, or one rank of a torchrun job); returns the run's summary (rank 0)."""
    ctx = distributed.setup(cfg.device, cfg.threads)
    try:
        return Trainer(cfg, ctx).fit()
    finally:
        distributed.cleanup(ctx)


def _amp(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    mode = cfg.amp if cfg.amp != "auto" else ("fp16" if device.type == "cuda" else "none")
    if mode == "fp16" and device.type != "cuda":
        raise UserError("--amp fp16 needs CUDA (GradScaler); use --amp bf16 or none on CPU")
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[mode]


class Trainer:
    def __init__(self, cfg: TrainConfig, ctx: distributed.Dist) -> None:
        self.ctx, self.out = ctx, Path(cfg.out)
        self.cfg, self.model, self.loaders = self._build(cfg)
        self.family = self.model.identity.family   # the official rules that differ by family (lr counter, files)
        self.amp_dtype = _amp(self.cfg, ctx.device)
        # QAT keeps no EMA: the fake-quant observers' buffers change shape on the first batch (per-channel ranges)
        # and an average of quantization ranges is not a range the converted model could use
        self.ema = ModelEMA(self.model, self.cfg.ema_momentum) if self.cfg.ema and not self.cfg.qat else None
        if self.cfg.ema and self.cfg.qat:
            log.info("--qat: no EMA copy (the trained fake-quant ranges are the model's own)")
        self.optimizer = build_optimizer(param_groups(self.model, self.cfg, is_head=self.task.is_head), self.cfg)
        self.schedule = LRSchedule(self.cfg)
        self.scaler = torch.amp.GradScaler(ctx.device.type, enabled=self.amp_dtype == torch.float16)
        self.ddp = self._wrap(self.model)
        self.progress = Progress()
        self.metrics = MetricsLog(self.out / "metrics.jsonl")
        self._check_steps()
        self._saved = self._check_out()
        self._plotted = -math.inf                # monotonic time of the last curves.png

    def _build(self, cfg: TrainConfig) -> tuple[TrainConfig, nn.Module, Loaders]:
        torch.manual_seed(cfg.seed)              # the same initial weights on every rank and every run
        model = create_model(cfg.model, num_classes=cfg.num_classes, **cfg.model_kwargs)  # its tag: preprocessing
        self.task = get_task(model.identity.task)
        train_set, val_set = self.task.build_datasets(cfg, model)
        n = getattr(train_set, "num_classes", None)
        if cfg.num_classes is None and n is not None:
            cfg = replace(cfg, num_classes=n)   # the data decides the head; a different count resets it
        elif n is not None and cfg.num_classes != n and cfg.resume and (self.out / "last.pt").is_file():
            raise UserError(f"--resume: the run trains {cfg.num_classes} classes, but {cfg.data} has {n}; resume "
                            f"with the run's --data or start a new --out")
        elif n is not None and cfg.num_classes != n:
            raise UserError(f"--num-classes {cfg.num_classes}, but {cfg.data} has {n} classes (with background "
                            f"for dense tasks); leave --num-classes out to take the data's count")
        if self.task.name == "classification" and n is not None and n < 2:
            raise UserError(f"{cfg.data}: a classifier needs at least 2 classes, the data has {n}")
        weights = None if cfg.resume and (self.out / "last.pt").is_file() else cfg.weights   # last.pt wins
        if weights or getattr(model, "num_classes", cfg.num_classes) != cfg.num_classes:
            model = create_model(cfg.model, num_classes=cfg.num_classes, weights=weights,
                                 copy=cfg.weights_copy if weights else None, **cfg.model_kwargs)
        self.classes = list(getattr(train_set, "classes", None) or []) or None
        if self.classes and len(self.classes) == model.num_classes:
            model.identity = model.identity.with_classes(model.num_classes, self.classes)
        model.identity = evaluated_identity(cfg, model)   # every file of the run says the sizes it evaluated at
        self.data_fingerprint = fingerprint(train_set, val_set)
        family = model.identity.family           # the official sampler of the family (loaders)
        if cfg.qat:   # fake-quantized PT2E graph (export/pt2e.py); `quantize` converts its checkpoint to INT8
            model = QATModel(model, (cfg.image_size, cfg.image_size))
        model.to(self.ctx.device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        return cfg, model, build_loaders(cfg, self.task, train_set, val_set, self.ctx, family=family)

    def _wrap(self, model: nn.Module) -> nn.Module:
        if not self.ctx.enabled:
            return model
        if self.cfg.sync_bn and self.ctx.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            self.model = model
        elif self.cfg.sync_bn:
            log.warning("sync_bn: SyncBatchNorm runs on CUDA only; on %s each process keeps its own BatchNorm "
                        "statistics", self.ctx.device.type)
        return DistributedDataParallel(model, device_ids=[self.ctx.device] if self.ctx.device.type == "cuda" else None,
                                       find_unused_parameters=getattr(self.task, "find_unused_parameters", False))

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.ctx.device.type, dtype=self.amp_dtype)

    def _check_steps(self) -> None:
        batches = len(self.loaders.sampler)
        if self.cfg.max_steps_per_epoch:
            batches = min(batches, self.cfg.max_steps_per_epoch)
        if self.cfg.accum_steps > batches:
            raise UserError(f"accum_steps {self.cfg.accum_steps} exceeds the {batches} batch(es) of an epoch per "
                            f"process: no optimiser step would be taken; use at most {batches}")

    # ---- run folder ---------------------------------------------------------------------------------------------
    def _check_out(self) -> dict[str, Any] | None:
        """Everything about the run folder that can be wrong, checked before anything is written; the saved state
        when resuming."""
        last, config = self.out / "last.pt", self.out / "config.yaml"
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"--out {self.out} is a file; give a folder for the run")
        if last.is_file() and not self.cfg.resume:
            raise UserError(f"{self.out} already holds a run (last.pt): add --resume to continue it, or choose "
                            f"another --out")
        if not self.cfg.resume:
            return None
        if last.is_file():
            saved = checkpoints.load(last)
            check_resume(saved, config=self.cfg.to_dict(), data=self.data_fingerprint, world=self.ctx.world)
            return saved
        if config.is_file():   # stopped before its first checkpoint: the same job again, from its start
            check_resume({"config": read_config(config)}, config=self.cfg.to_dict(), data=None, world=self.ctx.world)
            log.info("--resume: %s has no last.pt yet; its job (config.yaml) starts from the beginning", self.out)
        else:
            log.info("--resume: no run in %s yet; starting it", self.out)
        return None

    def _prepare_out(self) -> None:
        if self._saved is not None:
            self._restore(self._saved)
            self._saved = None
        if self.ctx.main:
            self.metrics.keep_epochs_below(self.progress.epoch + 1)
            write_config(self.cfg.to_dict(), self.out / "config.yaml")
            write_owner(self.out)
        distributed.barrier(self.ctx)

    def _restore(self, saved: dict[str, Any]) -> None:
        self.model.load_state_dict(saved["model"])
        if self.ema is not None and saved.get("ema") is not None:
            self.ema.load_state_dict(saved["ema"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scaler.load_state_dict(saved["scaler"])
        self.progress = Progress(saved["epoch"], saved["step"], saved["iteration"], saved["best"])
        states = saved.get("rng") or []
        if states and self.progress.step:   # mid-epoch: each process continues its own stream exactly
            set_rng_state(states[self.ctx.rank] if len(states) == self.ctx.world else states[0])
        log.info("resumed %s at epoch %d, step %d", self.out / "last.pt", saved["epoch"] + 1, saved["step"])

    def save_last(self) -> None:
        """last.pt, with every rank's random state (a collective: every rank calls it)."""
        states = distributed.gather(rng_state(), ctx=self.ctx)
        if self.ctx.main:
            checkpoints.save_last(self.out / "last.pt", model=self.model, ema=self.ema, optimizer=self.optimizer,
                                  scaler=self.scaler, progress=self.progress, config=self.cfg.to_dict(),
                                  identity=identity_record(self.model), rng=states,
                                  data_fingerprint=self.data_fingerprint)

    # ---- the loop -----------------------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        start = time.perf_counter()
        # The folder lock first (one writer per run folder), then the signal handlers: a stop signal at any point
        # after this ends in a saved last.pt.
        with RunFolder(self.out, enabled=self.ctx.main), Signals() as signals:
            check_shared(self.out, self.ctx)
            self._prepare_out()
            while self.progress.epoch < self.cfg.epochs:
                stats = self._train_epoch(signals)
                if isinstance(stats, int):       # stopped by that signal at a step boundary
                    self.save_last()
                    p = self.progress
                    raise Stopped(stats, f"{self.out / 'last.pt'} saved at epoch {p.epoch + 1}, step {p.step}; "
                                         f"continue with --resume")
                self._end_epoch(stats)
        summary = self._summary(time.perf_counter() - start)
        if self.cfg.hub_folder and self.ctx.main:
            summary["hub_folder"] = str(save_run(self.out / "best.pt", self.cfg.hub_folder))
        return summary

    def _train_epoch(self, signals: Signals) -> dict[str, float] | int:
        """One epoch from `self.progress.step`; the epoch's mean stats, or the stop signal's number."""
        cfg, p, ctx = self.cfg, self.progress, self.ctx
        if p.step == 0:   # mid-epoch, the stream saved in last.pt continues instead
            torch.manual_seed(mix(cfg.seed, ctx.rank, p.epoch))
        self.loaders.sampler.set_epoch(p.epoch, p.step)
        total = p.step + len(self.loaders.sampler)
        if cfg.max_steps_per_epoch:
            total = min(total, cfg.max_steps_per_epoch)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)   # official: drops the last epoch's leftover micro-batches
        sums: dict[str, float] = {}
        steps = images = 0
        lr, start = 0.0, time.perf_counter()
        bar = progress_bar(self.loaders.train, total=total - p.step, desc=f"epoch {p.epoch + 1}/{cfg.epochs}",
                           enabled=ctx.main)
        for batch in bar:
            if p.step >= total:
                break
            lr = self.schedule.apply(self.optimizer, p.iteration, p.epoch)
            batch = self.task.to_device(batch, ctx.device, channels_last=cfg.channels_last)
            boundary = is_step_boundary(p.step, cfg.accum_steps)   # official: leftover micro-batches never step
            with contextlib.nullcontext() if boundary or not ctx.enabled else self.ddp.no_sync():
                with self.autocast():
                    loss, stats = self.task.training_loss(self.ddp, batch, cfg)
                stop_now, save_now, bad = distributed.max_ranks(signals.stop, signals.save,
                                                                 not bool(torch.isfinite(loss)), ctx=ctx)
                if bad:
                    raise self._non_finite(loss)
                self.scaler.scale(loss).backward()   # official: micro-batch gradients summed, not averaged
            if boundary:
                self._optimizer_step()
            if advances_counter(self.family, boundary=boundary):
                p.iteration += 1
            p.step, steps, images = p.step + 1, steps + 1, images + batch_len(batch)
            for k, v in {"train_loss": float(loss.detach()), **stats}.items():
                sums[k] = sums.get(k, 0.0) + v
            if ctx.main and steps % 10 == 0:
                bar.set_postfix(loss=f"{sums['train_loss'] / steps:.3f}", lr=f"{lr:.2e}", refresh=False)
            if stop_now and boundary:
                return int(stop_now)
            if save_now and boundary:   # SIGUSR1: a checkpoint now, and carry on
                signals.save = False
                self.save_last()
                log.info("saved %s at epoch %d, step %d (SIGUSR1)", self.out / "last.pt", p.epoch + 1, p.step)
        bar.close()
        seconds = time.perf_counter() - start
        counts = distributed.sum_ranks({k: v for k, v in sums.items() if k.endswith("_count")}, ctx=ctx)
        out = {"train_loss": None} | {k: v / max(steps, 1) for k, v in sums.items()} | counts
        return out | {"lr": lr, "images_per_s": round(images * ctx.world / max(seconds, 1e-9), 1),
                      "epoch_time_s": round(seconds, 1)}

    def _optimizer_step(self) -> None:
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)      # clip the true gradients, not the fp16-scaled ones
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)

    def _non_finite(self, loss: torch.Tensor) -> Exception:
        last = self.out / "last.pt"
        kept = f"{last} (from before epoch {self.progress.epoch + 1}) is left as it was" if last.is_file() \
            else "no checkpoint had been written yet"
        return NonFiniteLoss(f"non-finite loss ({float(loss.detach()):.4g}) at epoch {self.progress.epoch + 1}, step "
                             f"{self.progress.step + 1}; training stopped, {kept}")

    def _end_epoch(self, stats: dict[str, float]) -> None:
        p = self.progress
        record = {"epoch": p.epoch + 1, **stats}
        record |= {f"val_{k}": v for k, v in self._evaluate(self.model.eval()).items()}
        if self.ema is not None:
            record |= {f"ema_val_{k}": v for k, v in self._evaluate(self.ema.module).items()}
        key = self.task.main_metric
        sign = 1 if self.task.higher_is_better else -1
        candidates = [("model", record[f"val_{key}"])] + ([("ema", record[f"ema_val_{key}"])] if self.ema else [])
        source, score = max(candidates, key=lambda c: sign * c[1] if math.isfinite(c[1]) else -math.inf)
        # the official rule (ties count as a new best); nothing scored (NaN: no image read) is never a best
        improved = math.isfinite(score) and (p.best is None or is_better(score, p.best,
                                                                          higher_is_better=self.task.higher_is_better))
        p.epoch, p.step = p.epoch + 1, 0
        if improved:
            p.best = score
        if self.ctx.main:   # metrics first, then checkpoints: a kill in between re-runs this epoch, its line dropped
            self._write_epoch(record, improved, source)
        self.save_last()
        if self.ctx.main:
            self._report(record)
        if not record.get("val_images"):   # every rank has the summed count
            unreadable = record.get("val_skipped_count", 0)
            raise UserError(f"epoch {record['epoch']}: validation scored no image ({unreadable} unreadable), so there "
                            f"is no {key} and no best.pt; the epoch is saved in last.pt: fix the validation data, then "
                            f"--resume")

    def _evaluate(self, model: nn.Module) -> dict[str, float]:
        with torch.no_grad():
            return self.task.evaluate(model, self.loaders.val, device=self.ctx.device, autocast=self.autocast,
                                      channels_last=self.cfg.channels_last)

    def _write_epoch(self, record: dict[str, Any], improved: bool, source: str) -> None:
        # metrics first, then checkpoints: a kill in between re-runs this epoch, whose line resume then drops
        self.metrics.append(record)
        if improved:
            weights = (self.ema.module if source == "ema" else self.model).state_dict()
            checkpoints.save_best(self.out / "best.pt", weights=weights, source=source, epoch=record["epoch"],
                                  metrics=record, config=self.cfg.to_dict(), identity=identity_record(self.model))
        self._keep_official(record)

    def _report(self, record: dict[str, Any]) -> None:
        now = time.monotonic()   # redrawn at most every PLOT_EVERY_S and after the last epoch (a draw: ~0.2 s)
        if record["epoch"] >= self.cfg.epochs or now - self._plotted >= PLOT_EVERY_S:
            plot_curves(self.metrics.records(), self.out / "curves.png", metric=self.task.main_metric)
            self._plotted = now
        key = self.task.main_metric
        train_loss = math.nan if record["train_loss"] is None else record["train_loss"]
        log.info("epoch %d/%d  train_loss %.4f  val_%s %.2f%s  lr %.2e  %.0f img/s", record["epoch"],
                 self.cfg.epochs, train_loss, key, record[f"val_{key}"],
                 f"  ema_val_{key} {record[f'ema_val_{key}']:.2f}" if self.ema else "", record["lr"],
                 record["images_per_s"])

    # ---- the official checkpoint files (training.md §4) -----------------------------------------------------------
    def _keep_official(self, record: dict[str, Any]) -> None:
        """checkpoint[_ema]_best.pt, the k-best pools and checkpoint[_ema]_avg.pt, raw and EMA streams apart."""
        if not self.cfg.k_best_checkpoints:
            return
        family = self.family
        # (metric, higher is better, decimals, scale to the official units: mIoU and mAP in percent)
        key, higher, decimals, scale = getattr(self.task, "official_selection", lambda f: (
            self.task.main_metric, self.task.higher_is_better, 4, 1.0))(family)
        if getattr(self, "_official", None) is None:   # this process's first epoch: the raw best logged so far
            self._official = BestTracker(family, higher_is_better=higher, k=self.cfg.k_best_checkpoints,
                                         decimals=decimals)
            for r in self.metrics.records():
                value = r.get(f"val_{key}")
                if r["epoch"] < record["epoch"] and value is not None and math.isfinite(value):
                    self._official.update("raw", value * scale, [])
            self._official.start()   # as the official engine: the EMA stream restarts from the raw best

        def saver(source: str):
            return lambda path, weights: checkpoints.save_best(
                path, weights=weights, source=source, epoch=record["epoch"], metrics=record,
                config=self.cfg.to_dict(), identity=identity_record(self.model))

        def load(path: Path) -> dict[str, torch.Tensor]:
            return read_weights(path).state   # a pool file: weights only, read safely

        streams = [("raw", "val", self.model, "model")] + ([("ema", "ema_val", self.ema, "ema")] if self.ema else [])
        for stream, prefix, weights, source in streams:
            value = record.get(f"{prefix}_{key}")
            if value is None or not math.isfinite(value):   # nothing scored: no best, no pool file
                continue
            keep_official_files(self.out, self._official, stream, value * scale,
                                weights.state_dict(), saver(source), load)

    def _summary(self, seconds: float) -> dict[str, Any]:
        records = self.metrics.records() if self.ctx.main else []
        key = self.task.main_metric
        last = records[-1] if records else {}
        summary = {"model": self.cfg.model, "data": self.cfg.data, "epochs": len(records),
                   f"val_{key}": last.get(f"val_{key}"), f"ema_val_{key}": last.get(f"ema_val_{key}"),
                   f"best_{key}": self.progress.best, "wall_s": round(seconds, 1),
                   "checkpoint": str(self.out / "best.pt"), "last": str(self.out / "last.pt"),
                   "plot": str(self.out / "curves.png"), "metrics": str(self.out / "metrics.jsonl")}
        if self.ctx.main:
            log.info("best val %s %.2f; checkpoint %s; plot %s", key, self.progress.best or math.nan,
                     summary["checkpoint"], summary["plot"])
        return summary


def progress_bar(iterable, *, total: int, desc: str, enabled: bool):
    return tqdm(iterable, total=total, desc=desc, disable=not enabled, file=sys.stderr, leave=False,
                dynamic_ncols=True, mininterval=1.0)
