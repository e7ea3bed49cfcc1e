"""Object detection (SSDLite): COCO 2017 data, the SSD multibox loss, COCO mAP through pycocotools' COCOeval,
boxes drawn on predictions.

Evaluation follows the official protocol: resize to 320x320, softmax / decode / per-class NMS (`SSDLite.postprocess`),
boxes scaled back to each original image, results with the original COCO category ids, COCOeval (bbox) against the
ground-truth json. The validation loss is reported beside the mAP (the official runs kept the lowest-loss
checkpoint; `best.pt` here follows mAP, the figure the paper reports).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2.functional import to_pil_image
from torchvision.utils import draw_bounding_boxes

from ..data.classes import class_names, coco_category_ids
from ..data.coco import CocoBoxes
from ..data.det_transforms import DetAugment, DetTrainTransform, OfficialDetEvalTransform
from ..data.scenes import SceneBoxes, is_scenes, scene_spec
from ..errors import UserError
from .base import Task
from .dense import (
    all_gather,
    base_dataset,
    dense_input,
    is_head,
    names_for,
    palette,
    pil_to_image,
    rank_sum,
    stack_batch,
)
from .metrics import COCO_STATS, coco_map, coco_results

DISPLAY_SCORE = 0.3     # `predict` lists and draws detections at least this confident


class Detection(Task, name="detection", main_metric="map"):
    def build_datasets(self, cfg: Any, model: nn.Module, *, train: bool = True) -> tuple[Dataset | None, Dataset]:
        aug = DetAugment.from_options(cfg.task_options)
        inp = dense_input(cfg, model)
        family = model.identity.family
        flip = _flips_channels(model, inp)
        if is_scenes(cfg.data):    # the embedded digit scenes (`--data scenes`, or the default `digits`)
            spec = scene_spec(cfg.task_options)
            boxes = lambda split, transform, train=False: SceneBoxes(spec, split, transform)  # noqa: E731
        else:
            boxes = lambda split, transform, train=False: CocoBoxes(  # noqa: E731
                cfg.data, split, transform=transform, train=train, clip=family == "v2")
        val = boxes("val", OfficialDetEvalTransform(family, inp.eval_size, flip_channels=flip))   # = predict's
        if not train and model.num_classes != len(val.class_names):
            raise UserError(f"{model.name} predicts {model.num_classes} classes (with background) but "
                            f"{val.ann_file} has {len(val.class_names) - 1} categories")
        train_set = boxes("train", DetTrainTransform(
            family, hflip=cfg.hflip, photometric=aug.photometric, crop=aug.iou_crop, min_scale=aug.crop_min_scale,
            flip_channels=flip), train=True) if train else None
        for ds in (val, train_set):
            if ds is not None:
                ds.num_classes, ds.classes = len(ds.class_names), list(ds.class_names)
        return train_set, val

    def collate(self, samples: Sequence[Any]) -> dict[str, Any]:
        return stack_batch(samples, "targets")

    def training_loss(self, model: nn.Module, batch: Any, cfg: Any) -> tuple[Tensor, dict[str, float]]:
        if batch["images"] is None:
            raise UserError("every image of a training batch was unreadable; check the data set")
        images = batch["images"]
        class_logits, box_regressions = model(images)
        raw = getattr(model, "module", model)         # DDP wraps the SSDLite that owns anchors and loss
        losses = raw.loss(class_logits, box_regressions, batch["targets"], tuple(images.shape[-2:]))
        stats = {k: float(losses[k].detach()) for k in ("cls_loss", "box_loss")}
        return losses["loss"], stats | {"skipped_count": float(batch["skipped"])}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader, *, device: torch.device, autocast,
                 channels_last: bool = False) -> dict[str, float]:
        data = base_dataset(loader.dataset)
        results, image_ids = [], []
        loss_sum = images = skipped = 0.0
        for batch in loader:
            batch = self.to_device(batch, device, channels_last=channels_last)
            skipped += batch["skipped"]
            if batch["images"] is None:
                continue
            x, targets = batch["images"], batch["targets"]
            with autocast():
                class_logits, box_regressions = model(x)
            class_logits, box_regressions = class_logits.float(), box_regressions.float()
            size = tuple(x.shape[-2:])
            loss_sum += float(model.loss(class_logits, box_regressions, targets, size)["loss"]) * len(targets)
            detections = model.postprocess(class_logits, box_regressions, [t["orig_size"] for t in targets], size)
            ids = [t["image_id"] for t in targets]
            results += coco_results(detections, ids, data.category_ids)
            image_ids += ids
            images += len(targets)
        gathered = all_gather((results, image_ids))
        metrics = {k: 0.0 for k in COCO_STATS}
        if not dist.is_initialized() or dist.get_rank() == 0:   # COCOeval once, on rank 0, then shared
            metrics = coco_map(data.coco, [r for rs, _ in gathered for r in rs],
                               [i for _, ids in gathered for i in ids])
        metrics = all_gather(metrics)[0]
        n = rank_sum(images, device)
        return metrics | {"loss": rank_sum(loss_sum, device) / max(n, 1), "images": int(n),
                          "skipped_count": int(rank_sum(skipped, device))}

    def official_selection(self, family: str) -> tuple[str, bool, int, float]:
        """(metric, higher is better, decimals, scale) of the official best checkpoints: v1 kept the lowest
        validation loss (no mAP during training), v2 the highest COCO mAP x 100 (rounded to 5 decimals)."""
        return ("loss", False, 4, 1.0) if family == "v1" else ("map", True, 5, 100.0)

    def is_head(self, parameter_name: str) -> bool:
        """extra layers and SSD heads at `head_lr_multiplier` x the scheduled lr (official: 1)."""
        return is_head(parameter_name)

    @torch.no_grad()
    def predict(self, model: nn.Module, images: list, *, device: torch.device, top_k: int = 5, cfg: Any,
                overlay_paths: list[str | Path] | None = None, score_threshold: float = DISPLAY_SCORE) -> list[dict]:
        """Per image: the `top_k` best detections scoring at least `score_threshold`, boxes (x1, y1, x2, y2) in
        pixels of the original image; with `overlay_paths`, the boxes, names and scores drawn into those PNGs. The
        image goes through the evaluation input `eval` scores (the family's resize)."""
        inp = dense_input(cfg, model)
        transform = OfficialDetEvalTransform(model.identity.family, inp.eval_size,
                                             flip_channels=_flips_channels(model, inp))
        names = names_for(model) or [str(i) for i in range(model.num_classes)]
        coco_ids = coco_category_ids() if names == class_names("coco") else None   # report the original ids too
        results = []
        for i, im in enumerate(images):
            rgb = pil_to_image(im)
            x = transform(rgb)[0].unsqueeze(0).to(device)
            det = model.postprocess(*model(x), [tuple(rgb.shape[-2:])], inp.eval_size)[0]
            keep = det["scores"] >= score_threshold
            boxes, scores, labels = det["boxes"][keep].cpu(), det["scores"][keep].cpu(), det["labels"][keep].cpu()
            order = scores.argsort(descending=True)[:top_k]
            boxes, scores, labels = boxes[order], scores[order], labels[order]
            found = [{"label": int(c), "name": names[c], "score": round(float(s), 4),
                      "box": [round(float(v), 1) for v in b]} | ({"category_id": coco_ids[c - 1]} if coco_ids else {})
                     for b, s, c in zip(boxes, scores, labels.tolist())]
            result = {"size": list(rgb.shape[-2:]), "detections": found}
            if overlay_paths is not None:
                draw_boxes(rgb, boxes, labels, scores, names).save(overlay_paths[i])
                result["overlay"] = str(overlay_paths[i])
            results.append(result)
        return results


def _flips_channels(model: nn.Module, inp) -> bool:
    """Whether the family's reader order differs from the model's: v1 works in OpenCV's BGR, v2 in RGB."""
    return inp.channel_order == ("rgb" if model.identity.family == "v1" else "bgr")


def draw_boxes(image: Tensor, boxes: Tensor, labels: Tensor, scores: Tensor | None, names: list[str]):
    """Boxes with their class names (and scores, where given: None draws ground truth) over the uint8 image."""
    if len(boxes) == 0:
        return to_pil_image(image)
    colours = palette(len(names))
    text = [names[c] for c in labels.tolist()]
    if scores is not None:
        text = [f"{t} {s:.2f}" for t, s in zip(text, scores.tolist())]
    drawn = draw_bounding_boxes(image.as_subclass(Tensor), boxes, labels=text, width=2,
                                colors=[colours[c] for c in labels.tolist()])
    return to_pil_image(drawn)


TASK = Detection
