"""SSD training targets and the multibox loss (Liu et al. 2016), as the official MobileViT releases train SSDLite.

Matching: every ground-truth box gets the prior that overlaps it most; every other prior takes the ground truth it
overlaps most when that IoU is >= 0.5, else it is background (label 0). Loss: cross-entropy summed over the
positives and the hardest negatives (ranked by background loss, 3 per positive, per image), plus Smooth-L1 summed
over the positives' encoded offsets, both divided by the number of positives in the batch.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_convert, box_iou


def match(gt_boxes: Tensor, gt_labels: Tensor, anchors_xyxy: Tensor, *, iou_threshold: float = 0.5
          ) -> tuple[Tensor, Tensor]:
    """Per prior: its label [A] (0 = background) and its matched box [A, 4] (xyxy; the prior itself if none).

    gt_boxes [G, 4] xyxy in the anchors' units, gt_labels [G] in 1..C-1.
    """
    num_anchors = anchors_xyxy.shape[0]
    if gt_boxes.numel() == 0:
        return gt_labels.new_zeros(num_anchors), anchors_xyxy.clone()
    iou = box_iou(gt_boxes, anchors_xyxy)                      # [G, A]
    best_iou, best_gt = iou.max(dim=0)                         # per prior: its best ground truth
    best_prior = iou.argmax(dim=1)                             # per ground truth: its best prior
    # Each ground truth keeps its best prior whatever the IoU (a later box wins a prior two boxes share).
    best_gt[best_prior] = torch.arange(len(best_prior), device=best_gt.device)
    best_iou[best_prior] = 2.0
    labels = gt_labels[best_gt].clone()
    labels[best_iou < iou_threshold] = 0
    return labels, gt_boxes[best_gt]


def hard_negatives(background_loss: Tensor, positive: Tensor, neg_pos_ratio: int) -> Tensor:
    """[B, A] mask of the `neg_pos_ratio x positives` highest-loss negatives of each image."""
    loss = background_loss.masked_fill(positive, float("-inf"))
    rank = loss.argsort(dim=1, descending=True).argsort(dim=1)   # rank of each prior by its loss, 0 = hardest
    num_neg = positive.sum(dim=1, keepdim=True) * neg_pos_ratio
    return (rank < num_neg) & ~positive


def multibox_loss(class_logits: Tensor, box_regressions: Tensor, labels: Tensor, box_targets: Tensor, *,
                  neg_pos_ratio: int = 3) -> dict[str, Tensor]:
    """class_logits [B, A, C], box_regressions/box_targets [B, A, 4], labels [B, A] -> {loss, cls_loss, box_loss}
    (each divided by the number of positives, at least 1)."""
    class_logits, box_regressions = class_logits.float(), box_regressions.float()
    positive = labels > 0
    with torch.no_grad():
        background_loss = -F.log_softmax(class_logits, dim=-1)[..., 0]
        keep = positive | hard_negatives(background_loss, positive, neg_pos_ratio)
    num_pos = positive.sum().clamp(min=1)
    cls_loss = F.cross_entropy(class_logits[keep], labels[keep], reduction="sum") / num_pos
    box_loss = F.smooth_l1_loss(box_regressions[positive], box_targets[positive], reduction="sum") / num_pos
    return {"loss": cls_loss + box_loss, "cls_loss": cls_loss, "box_loss": box_loss}


def ssd_targets(targets: list[dict[str, Tensor]], anchors: Tensor, input_size: tuple[int, int],
                encode: Callable[[Tensor, Tensor], Tensor], *, iou_threshold: float = 0.5) -> tuple[Tensor, Tensor]:
    """Per-image targets {"boxes" xyxy pixels of the input, "labels"} -> labels [B, A] and regressions [B, A, 4]."""
    h, w = input_size
    scale = anchors.new_tensor([w, h, w, h])
    anchors_xyxy = box_convert(anchors, "cxcywh", "xyxy")
    labels, regressions = [], []
    for t in targets:
        lab, boxes = match(t["boxes"].to(anchors) / scale, t["labels"].to(anchors.device), anchors_xyxy,
                           iou_threshold=iou_threshold)
        labels.append(lab)
        regressions.append(encode(box_convert(boxes, "xyxy", "cxcywh"), anchors))
    return torch.stack(labels), torch.stack(regressions)
