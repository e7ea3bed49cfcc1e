"""Image classification: ImageFolder / digits data, label-smoothed cross-entropy (soft targets under
MixUp/CutMix), top-1/top-5 accuracy (`tasks.metrics.Accuracy`, reduced over DDP ranks), top-k prediction."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ..data import classification as datasets
from ..data.transforms import batch_mix, eval_transform, pipeline
from ..errors import UserError
from .base import Task
from .metrics import Accuracy, rank_sum


class Collate:
    """Stack `(image, label, unreadable)` samples; drop Nones; count unreadable files; optional batch mix."""

    def __init__(self, mix: Any = None) -> None:
        self.mix = mix

    def __call__(self, samples: Sequence[Any]) -> tuple[Tensor | None, Tensor | None, int]:
        good = [s for s in samples if s is not None]
        skipped = sum(s[2] for s in good) + len(samples) - len(good)
        if not good:
            return None, None, skipped
        images = torch.stack([torch.as_tensor(s[0]) for s in good])      # [B, 3, H, W]
        targets = torch.tensor([s[1] for s in good])                    # [B]
        if self.mix is not None:
            images, targets = self.mix(images, targets)                 # targets -> [B, K] soft when applied
        return images, targets, skipped


class Classification(Task, name="classification", main_metric="top1"):
    def build_datasets(self, cfg: Any, model: nn.Module, *, train: bool = True) -> tuple[Dataset | None, Dataset]:
        pipe = pipeline(cfg, model)
        if cfg.data == "digits":
            return datasets.digits(pipe, image_size=cfg.image_size, train=train)
        return datasets.image_folder(cfg.data, pipe, image_size=cfg.image_size, train=train,
                                     classes=cfg.task_options.get("classes"))

    def collate(self, samples: Sequence[Any]) -> Any:
        return Collate()(samples)

    def train_collate(self, cfg: Any):
        return Collate(batch_mix(cfg.num_classes, mixup_alpha=cfg.mixup_alpha, cutmix_alpha=cfg.cutmix_alpha,
                                 prob=cfg.mix_prob))

    def training_loss(self, model: nn.Module, batch: Any, cfg: Any) -> tuple[Tensor, dict[str, float]]:
        images, targets, skipped = batch
        if images is None:
            raise UserError("every image of a training batch was unreadable; check the data set")
        logits = model(images)
        # F.cross_entropy takes hard labels or (mixed) probabilities; smoothing as the official recipes, train only.
        loss = F.cross_entropy(logits.float(), targets, label_smoothing=cfg.label_smoothing)
        return loss, {"skipped_count": float(skipped)}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader, *, device: torch.device, autocast,
                 channels_last: bool = False) -> dict[str, float]:
        acc, skipped = Accuracy(model.num_classes, 5, device), 0
        for batch in loader:
            x, y, bad = self.to_device(batch, device, channels_last=channels_last)
            skipped += int(bad)
            if x is None:
                continue
            with autocast():
                logits = model(x).float()
            acc.update(logits, y, float(F.cross_entropy(logits, y, reduction="sum")))
        return acc.compute() | {"skipped_count": int(rank_sum(skipped, device))}

    @torch.no_grad()
    def predict(self, model: nn.Module, images: list, *, device: torch.device, top_k: int = 5,
                cfg: Any) -> list[dict]:
        transform = eval_transform(pipeline(cfg, model))
        batch = torch.stack([transform(im) for im in images]).to(device)
        probs = model(batch).float().softmax(-1)
        names = model.identity.class_names
        values, indices = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
        return [{"top": [{"class": int(i), "name": names[i] if names else str(int(i)), "prob": round(float(p), 6)}
                         for p, i in zip(vs, ids)]} for vs, ids in zip(values, indices)]


TASK = Classification
