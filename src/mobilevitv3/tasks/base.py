"""The contract between the task-agnostic training engine (`mobilevitv3.train`) and one task.

A task (classification, segmentation, detection) is a small stateless object. The engine owns everything shared:
device and DDP, the optimiser and schedule, AMP, EMA, gradient accumulation and clipping, checkpoints, logs. The task
owns what differs: data, loss, metrics and prediction.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, default_collate


class Task:
    """Base class of a task. Subclass it in `mobilevitv3/tasks/<name>.py` as
    `class Segmentation(Task, name="segmentation", main_metric="miou")` (`higher_is_better` defaults to True), and
    export the instance (or class) as `TASK`; `get_task(name)` imports it lazily.

    The contract, in the order the engine uses it:

    `build_datasets(cfg, model, *, train=True) -> (train_set | None, val_set)`
        `cfg` is the resolved `TrainConfig` when training, the loader's `EvalSettings` (`settings.py`: the same
        evaluation fields, no augmentation) with `train=False` (fields: `data`, `image_size`, `eval_resize`,
        `eval_crop`, augmentation fields, and `task_options: dict` for anything task-specific, e.g.
        `{"mask_fill": 255}`); `model` is the
        unwrapped model, whose `model.identity.preprocess` says the channel order, resize, crop and
        interpolation of its checkpoint. With `train=False` (`mobilevitv3 eval`) return `(None, val_set)` and do not
        touch the training split. A missing or empty dataset is a `UserError` with one clear line.
        * The **training** set is read through the engine's batch sampler (`mobilevitv3.data.sampler`), so its
          `__getitem__` receives a tuple `(index, height, width)`: the crop size the whole batch must have (the
          multi-scale sampler varies it per step; the fixed sampler always passes `cfg.image_size`). Use
          `mobilevitv3.data.sampler.unpack(key, default)` to accept both a tuple and a plain int. `len()` is the
          number of samples.
        * The **validation** set is indexed by plain ints, in order; the engine shards it across DDP ranks without
          padding or duplicates.
        * A sample that cannot be read (truncated/unreadable file) must not raise inside a DataLoader worker: return
          None and let `collate` drop it and count it (see `_count` below).

    `collate(samples) -> batch`
        Turns a list of samples (possibly containing None) into one batch. Any structure is fine (tensor tuple,
        dict, lists of targets for detection); the engine only moves it with `to_device`.
        `train_collate(cfg)` returns the collate used for training (classification adds mixup/cutmix there);
        it defaults to `collate`.

    `to_device(batch, device, *, channels_last) -> batch`
        Moves every tensor in the batch to the device (4-D float tensors to channels-last if asked). The default
        walks tuples, lists and dicts; override only for exotic batches.

    `training_loss(model, batch, cfg) -> (loss, stats)`
        Runs the forward pass through `model` (which may be DistributedDataParallel-wrapped and is called inside the
        engine's autocast context) and returns a scalar loss tensor and a dict of Python floats for the log.
        Stats are averaged over the epoch's steps, except keys ending in `_count`, which are summed (for example
        `skipped_count`: samples dropped by `collate`). Do not call `backward()`; the engine does that, scales the
        loss for accumulation and checks it is finite.

    `evaluate(model, loader, *, device, autocast, channels_last) -> dict[str, float]`
        Called on EVERY rank with the rank's shard of the validation set, in eval mode, under `torch.no_grad()`;
        `model` is the unwrapped raw model or its EMA copy. Return metrics reduced over all ranks (the counters of
        tasks/metrics.py sum theirs with one all_reduce when torch.distributed is initialised). The dict must contain
        `self.main_metric` (used for `best.pt`) and may contain `skipped_count`. `autocast` is a context-manager
        factory (call it: `with autocast(): ...`).

    `is_head(parameter_name) -> bool`
        Whether a parameter trains at `cfg.head_lr_multiplier` x the scheduled lr (the dense heads); the trainer
        builds the optimiser groups (weight decay per `cfg.no_decay_bn_filter_bias`) from this.

    `predict(model, images, *, device, top_k, cfg=None) -> list[dict]`
        Used by `mobilevitv3 predict`: `images` is a list of RGB `PIL.Image`s; `model` is an eval-mode model with its
        `identity` (preprocessing, class names when known). `cfg` is the `EvalSettings` the loader gave
        with the model (the sizes its identity or checkpoint records). Return one JSON-able dict per image.

    `main_metric` / `higher_is_better`
        The metric name in `evaluate`'s dict that decides `best.pt`, and its direction (top1/True, miou/True,
        loss/False ...).

    `find_unused_parameters`
        Passed to DistributedDataParallel: True when some parameters get no gradient in a training step.
    """

    name: str = ""
    main_metric: str = "loss"
    higher_is_better: bool = False
    find_unused_parameters: bool = False

    def __init_subclass__(cls, *, name: str = "", main_metric: str = "loss", higher_is_better: bool = True,
                          **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if name:   # a subclass of a task without its own name keeps its parent's
            cls.name, cls.main_metric, cls.higher_is_better = name, main_metric, higher_is_better

    def build_datasets(self, cfg: Any, model: nn.Module, *, train: bool = True) -> tuple[Dataset | None, Dataset]:
        raise NotImplementedError

    def collate(self, samples: Sequence[Any]) -> Any:
        return default_collate([s for s in samples if s is not None])

    def train_collate(self, cfg: Any):
        return self.collate

    def to_device(self, batch: Any, device: torch.device, *, channels_last: bool = False) -> Any:
        if isinstance(batch, Tensor):
            batch = batch.to(device, non_blocking=True)
            if channels_last and batch.ndim == 4 and batch.is_floating_point():
                batch = batch.contiguous(memory_format=torch.channels_last)
            return batch
        if isinstance(batch, dict):
            return {k: self.to_device(v, device, channels_last=channels_last) for k, v in batch.items()}
        if isinstance(batch, (list, tuple)):
            return type(batch)(self.to_device(v, device, channels_last=channels_last) for v in batch)
        return batch

    def training_loss(self, model: nn.Module, batch: Any, cfg: Any) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, loader: DataLoader, *, device: torch.device, autocast,
                 channels_last: bool = False) -> dict[str, float]:
        raise NotImplementedError

    def is_head(self, parameter_name: str) -> bool:
        return False

    def predict(self, model: nn.Module, images: list, *, device: torch.device, top_k: int = 5,
                cfg: Any) -> list[dict]:
        raise NotImplementedError
