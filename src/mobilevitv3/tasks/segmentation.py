"""Semantic segmentation (DeepLabv3 / PSPNet): PASCAL VOC or ADE20K data, pixel cross-entropy with the ignore value
(+ 0.4 x the auxiliary head's loss on the v2-based models), mIoU with the official protocol, mask overlays.

Targets are int64 label maps; any value outside [0, classes) -- VOC's 255, ADE20K's -1 -- is ignored by the loss and
the metric alike, so the task needs no per-data-set state. Evaluation: the image resized to 512x512, the predicted
label map resized (nearest) back to the original mask, one confusion matrix over the whole set.
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2.functional import to_pil_image
from torchvision.utils import draw_segmentation_masks

from ..data.ade20k import ADE20K, ade20k_segmentation
from ..data.classes import class_names
from ..data.scenes import SCENES, SceneMasks, is_scenes, scene_spec
from ..data.seg_transforms import SegAugment, SegTrainTransform, official_eval_transform
from ..data.voc import VOC, voc_segmentation
from ..errors import UserError
from .base import Task
from .dense import base_dataset, dense_input, is_head, names_for, palette, pil_to_image, rank_sum, stack_batch
from .metrics import ConfusionMatrix

DATASETS = {"voc": (VOC, voc_segmentation), "ade20k": (ADE20K, ade20k_segmentation), "scenes": (SCENES, None)}


def dataset_kind(cfg: Any, model: nn.Module) -> str:
    """The embedded scenes for `--data scenes` (or the default `digits`), else `task_options.dataset`, else the
    model tag's data set, else whichever published layout `--data` holds."""
    if is_scenes(cfg.data):
        return "scenes"
    kind = cfg.task_options.get("dataset") or model.identity.dataset
    if kind is None:
        root = Path(cfg.data)
        kind = "ade20k" if (root / "ADEChallengeData2016").is_dir() or (root / "annotations" / "training").is_dir() \
            else "voc"
    if kind not in DATASETS:
        raise UserError(f"unknown segmentation data set {kind!r}; expected one of {', '.join(DATASETS)}")
    return kind


def masked_cross_entropy(logits: Tensor, target: Tensor, *, balance: float = 0.0) -> Tensor:
    """Mean pixel cross-entropy over labelled pixels (0 when a batch has none, instead of NaN). `balance` > 0
    weights class c by (its share of the labelled pixels) ** -balance, scaled so that the mean weight of the
    labelled pixels is 1: rare classes count more, the loss keeps its scale."""
    valid = (target >= 0) & (target < logits.shape[1])
    weight = None
    if balance > 0 and valid.any():
        counts = torch.bincount(target[valid], minlength=logits.shape[1]).double()
        per_class = (counts.clamp(min=1) / counts.sum()) ** -balance            # absent classes: never used
        weight = (per_class * counts.sum() / (per_class * counts).sum()).float()
    loss = F.cross_entropy(logits.float(), target.masked_fill(~valid, -100), weight=weight, ignore_index=-100,
                           reduction="sum")
    return loss / valid.sum().clamp(min=1)


class Segmentation(Task, name="segmentation", main_metric="miou"):
    def build_datasets(self, cfg: Any, model: nn.Module, *, train: bool = True) -> tuple[Dataset | None, Dataset]:
        kind = dataset_kind(cfg, model)
        fmt, make = DATASETS[kind]
        if kind == "scenes":       # in memory, generated per index: the spec replaces the folder
            spec = scene_spec(cfg.task_options)
            make = lambda data, split, transform: SceneMasks(spec, split, transform)  # noqa: E731
        aug = SegAugment.from_options(cfg.task_options)
        inp = dense_input(cfg, model)
        if not train and model.num_classes != fmt.num_classes:
            raise UserError(f"{model.name} predicts {model.num_classes} classes but {fmt.name} has "
                            f"{fmt.num_classes}; use the matching tag (.voc / .ade20k)")
        family = model.identity.family
        # training-time validation scores at the eval size; `eval` (train=False) runs the family's protocol
        val = make(cfg.data, "val", _eval_transform(model, inp, validation=train))
        coco = getattr(cfg, "coco_root", None)
        if coco and kind != "voc":
            raise UserError(f"coco_root (use_coco_data) adds VOC-class COCO masks to PASCAL VOC, not to {fmt.name}")
        extra = {"coco_root": coco, "coco_cache": cfg.coco_cache} if coco else {}
        train_set = make(cfg.data, "train", SegTrainTransform(
            aug, ignore=fmt.stored_ignore, hflip=cfg.hflip, backend="opencv" if family == "v1" else "pil",
            **inp.kwargs()), **extra) if train else None
        for ds in (val, train_set):
            if ds is not None:
                ds.num_classes, ds.classes = fmt.num_classes, class_names(kind)
        return train_set, val

    def collate(self, samples: Sequence[Any]) -> dict[str, Any]:
        good = [s for s in samples if s is not None]
        if any(s[0].shape != good[0][0].shape for s in good):   # the v2 protocol: each image at its own size
            return {"images": [s[0] for s in good], "masks": [s[1] for s in good], "skipped": len(samples) - len(good)}
        batch = stack_batch(samples, "masks")
        masks = batch["masks"]
        if masks and all(m.shape == masks[0].shape for m in masks):   # training crops: one tensor
            batch["masks"] = torch.stack(masks)
        return batch

    def training_loss(self, model: nn.Module, batch: Any, cfg: Any) -> tuple[Tensor, dict[str, float]]:
        if batch["images"] is None:
            raise UserError("every image of a training batch was unreadable; check the data set")
        out = model(batch["images"])
        logits, aux = out if isinstance(out, tuple) else (out, None)
        loss = masked_cross_entropy(logits, batch["masks"], balance=cfg.class_balance)
        stats = {"seg_loss": float(loss.detach()), "skipped_count": float(batch["skipped"])}
        if aux is not None:   # the v2-based models' training-only FCN head on layer4
            aux_loss = masked_cross_entropy(aux, batch["masks"], balance=cfg.class_balance)
            loss = loss + cfg.aux_loss_weight * aux_loss
            stats["aux_loss"] = float(aux_loss.detach())
        return loss, stats

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader, *, device: torch.device, autocast,
                 channels_last: bool = False) -> dict[str, float]:
        matrix = ConfusionMatrix(model.num_classes, device)
        images = skipped = 0
        for batch in loader:
            batch = self.to_device(batch, device, channels_last=channels_last)
            skipped += batch["skipped"]
            if batch["images"] is None:
                continue
            sizes = [tuple(mask.shape[-2:]) for mask in batch["masks"]]
            for label_map, mask in zip(_label_maps(model, batch["images"], sizes, autocast), batch["masks"]):
                matrix.update(resize_labels(label_map, tuple(mask.shape[-2:])), mask)
            images += len(batch["masks"])
        matrix.all_reduce()
        names = getattr(base_dataset(loader.dataset), "classes", None)
        return matrix.compute(names) | {"images": int(rank_sum(images, device)),
                                        "skipped_count": int(rank_sum(skipped, device))}

    def official_selection(self, family: str) -> tuple[str, bool, int, float]:
        """The official best checkpoints follow mIoU in percent, rounded to 4 decimals (ours is a fraction)."""
        return "miou", True, 4, 100.0

    def is_head(self, parameter_name: str) -> bool:
        """both heads at `head_lr_multiplier` x the scheduled lr (the v1-based recipe: 10)."""
        return is_head(parameter_name)

    @torch.no_grad()
    def predict(self, model: nn.Module, images: list, *, device: torch.device, top_k: int = 5, cfg: Any,
                overlay_paths: list[str | Path] | None = None) -> list[dict]:
        """Per image: the classes found, by pixel share (at most `top_k`); with `overlay_paths`, the mask drawn over
        each image into that PNG. The image goes through the evaluation protocol `eval` scores (the family's
        resize, the logits brought back to the image's size), so the mask is the one `eval` would compare."""
        transform = _eval_transform(model, dense_input(cfg, model), validation=False)
        names = names_for(model) or [str(i) for i in range(model.num_classes)]
        results = []
        for i, im in enumerate(images):
            rgb = pil_to_image(im)
            size = tuple(rgb.shape[-2:])
            (label_map,) = _label_maps(model, [transform(rgb, None)[0].to(device)], [size], contextlib.nullcontext)
            labels = resize_labels(label_map, size).cpu()
            counts = torch.bincount(labels.flatten(), minlength=model.num_classes)
            order = [int(c) for c in counts.argsort(descending=True) if counts[c] > 0][:top_k]
            result = {"size": list(rgb.shape[-2:]), "classes": [
                {"label": c, "name": names[c], "fraction": round(float(counts[c]) / labels.numel(), 6)} for c in order]}
            if overlay_paths is not None:
                overlay(rgb, labels, model.num_classes, skip_background=names[0] == "background") \
                    .save(overlay_paths[i])
                result["overlay"] = str(overlay_paths[i])
            results.append(result)
        return results


def _eval_transform(model: nn.Module, inp, *, validation: bool):
    """The family's official evaluation input (training-time `validation`: image and mask at the eval size)."""
    return official_eval_transform(model.identity.family, inp.eval_size, validation=validation,
                                   stride=getattr(model.backbone, "output_stride", 16), channel_order=inp.channel_order)


def _label_maps(model: nn.Module, images: Tensor | list[Tensor], sizes: list[tuple[int, int]], autocast
                ) -> list[Tensor]:
    """Predicted label maps of `images` for masks of `sizes`. Where a size differs from the input's (the evaluation
    protocol), v2 upsamples the logits bilinearly from the head straight to that size, v1 resizes them nearest
    (done by `resize_labels` on the argmax, which is the same)."""
    if isinstance(images, Tensor) and all(size == tuple(images.shape[-2:]) for size in sizes):
        with autocast():
            return list(model(images).argmax(1))
    out = []
    for x, size in zip(images, sizes):
        with autocast():
            out.append(model(x[None], size=size if model.identity.family == "v2" else None)[0].argmax(0))
    return out


def resize_labels(label_map: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of a label map [h, w] (same as resizing the logits nearest, then the argmax)."""
    if tuple(label_map.shape) == size:
        return label_map
    return F.interpolate(label_map[None, None].float(), size=size, mode="nearest")[0, 0].long()


def overlay(image: Tensor, labels: Tensor, num_classes: int, *, skip_background: bool, alpha: float = 0.5):
    """The label map blended over the uint8 image, one palette colour per class, as a PIL image."""
    present = [c for c in labels.unique().tolist() if not (skip_background and c == 0)]
    if not present:
        return to_pil_image(image)
    colours = palette(num_classes)
    masks = torch.stack([labels == c for c in present])
    drawn = draw_segmentation_masks(image.as_subclass(Tensor), masks, alpha=alpha, colors=[colours[c] for c in present])
    return to_pil_image(drawn)


TASK = Segmentation
