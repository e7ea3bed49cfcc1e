"""Every evaluation metric, with the official protocols; counts are summed across DDP ranks with one all_reduce.

Classification: top-1/top-k accuracy and mean loss from counts over the whole data set.

Segmentation: one confusion matrix accumulated over the whole data set (not a mean of per-image scores), pixels
whose target is outside [0, classes) -- the ignore value 255 / -1 -- left out; IoU_c = TP / (TP + FP + FN) and mIoU
the mean over the classes that occur in the targets or the predictions (on VOC val and ADE20K val every class
occurs, so this is the official mean over all classes). A plain `bincount` matrix rather than torchmetrics'
`MulticlassJaccardIndex`: it must skip two different ignore values, sum across DDP ranks with one `all_reduce`, and
give per-class IoU from the same counts.
Detection: COCO mAP from pycocotools' `COCOeval` itself, on results carrying the original category ids.
"""
from __future__ import annotations

import contextlib
import io
import logging
import math

import torch
import torch.distributed as dist
from torch import Tensor

log = logging.getLogger(__name__)
COCO_STATS = ("map", "map50", "map75", "map_small", "map_medium", "map_large")


def _all_reduce(t: Tensor) -> Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


def rank_sum(value: float, device: torch.device) -> float:
    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item())


class Accuracy:
    """Top-1 / top-k hits, summed loss and image count over a data set (one tensor of counts). Not torchmetrics
    (not a dependency): the loss sum travels in the same tensor, so one all_reduce gives every rank all four."""

    def __init__(self, num_classes: int, k: int = 5, device: torch.device | str = "cpu") -> None:
        self.k = min(k, num_classes)
        self.counts = torch.zeros(4, dtype=torch.float64, device=device)   # top1, topk, loss sum, images

    def update(self, logits: Tensor, target: Tensor, loss_sum: float) -> None:
        ranks = logits.topk(self.k, dim=-1).indices == target[:, None]     # [B, k]
        self.counts += torch.tensor([ranks[:, 0].sum().item(), ranks.any(-1).sum().item(), loss_sum, len(target)],
                                    dtype=torch.float64, device=self.counts.device)

    def compute(self) -> dict[str, float]:
        top1, topk, loss, n = _all_reduce(self.counts.clone()).tolist()
        if not n:   # nothing scored has no accuracy (NaN; JSON null), never 0%
            return {"top1": math.nan, "top5": math.nan, "loss": math.nan, "images": 0}
        return {"top1": 100 * top1 / n, "top5": 100 * topk / n, "loss": loss / n, "images": int(n)}


class ConfusionMatrix:
    """Counts [target, prediction] over a data set; `update` takes label maps of any equal shape."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu") -> None:
        self.num_classes = num_classes
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, prediction: Tensor, target: Tensor) -> None:
        if prediction.shape != target.shape:
            raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
        n = self.num_classes
        valid = (target >= 0) & (target < n)
        pairs = target[valid].long() * n + prediction[valid].long().clamp(0, n - 1)
        self.matrix += torch.bincount(pairs, minlength=n * n).reshape(n, n).to(self.matrix.device)

    def all_reduce(self) -> None:
        """Sum the counts of every DDP rank (no-op without torch.distributed)."""
        _all_reduce(self.matrix)

    def iou(self) -> Tensor:
        """Per-class IoU [classes], NaN for a class absent from both targets and predictions."""
        m = self.matrix.double()
        tp = m.diagonal()
        union = m.sum(0) + m.sum(1) - tp
        return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, math.nan))

    def compute(self, class_names: list[str] | None = None) -> dict[str, float]:
        """{"miou", "pixel_acc", "iou/<class name>" for every class that occurs} (flat, so it logs as JSON lines)."""
        iou = self.iou()
        present = ~iou.isnan()
        names = class_names or [str(i) for i in range(self.num_classes)]
        m = self.matrix.double()
        out = {"miou": float(iou[present].mean()) if present.any() else math.nan,
               "pixel_acc": float(m.diagonal().sum() / m.sum().clamp(min=1))}
        out.update({f"iou/{n}": v for n, v, p in zip(names, iou.tolist(), present.tolist()) if p})
        return out


def coco_results(detections: list[dict[str, Tensor]], image_ids: list[int], category_ids: list[int]) -> list[dict]:
    """Per-image {"boxes" xyxy pixels, "scores", "labels" 1..80} -> COCO result entries (xywh, original ids)."""
    out = []
    for det, image_id in zip(detections, image_ids):
        boxes = det["boxes"].detach().float().cpu()
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
        for box, score, label in zip(xywh, det["scores"].tolist(), det["labels"].tolist()):
            out.append({"image_id": int(image_id), "category_id": int(category_ids[int(label) - 1]),
                        "bbox": [round(v, 3) for v in box], "score": round(float(score), 6)})
    return out


def coco_map(coco_gt, results: list[dict], image_ids: list[int] | None = None) -> dict[str, float]:
    """COCOeval (bbox) of `results` against the ground-truth `COCO` object, over `image_ids` (default: all).

    Returns map (AP@[.5:.95]), map50, map75 and map_small/medium/large; an area range without ground truth is -1,
    as COCOeval (and torchmetrics) report it. No detections at all score 0 (pycocotools cannot load an empty list).
    """
    ids = sorted(set(image_ids)) if image_ids is not None else sorted(coco_gt.getImgIds())
    if not results:
        return {k: 0.0 for k in COCO_STATS}
    from pycocotools.cocoeval import COCOeval
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):   # pycocotools reports on stdout, where the CLI prints its JSON
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.params.imgIds = ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    log.debug("%s", printed.getvalue())
    return {k: float(v) for k, v in zip(COCO_STATS, ev.stats[:6])}
