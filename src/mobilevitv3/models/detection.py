"""SSDLite (Liu et al. 2016; Sandler et al. 2018) on any zoo backbone, as in the official MobileViT releases.

Feature maps: layer4 (stride 16), layer5 (32), three separable stride-2 extra layers (64, 128, 256) and a global
1x1 map. Each map gets a (projection +) separable prediction conv with `anchors * (4 + classes)` outputs.
`forward` returns raw (class_logits [B, A, C], box_regressions [B, A, 4]); `anchors`, `decode` and `postprocess`
are separate so that export and training can use the raw outputs. Class 0 is background.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import batched_nms, box_convert

from ..layers import ConvNormAct
from .backbone import MobileViTFeatures
from .identity import Identified, replace_task
from .ssd_loss import multibox_loss, ssd_targets


@dataclass(frozen=True)
class SSDConfig:
    extra_channels: tuple[int, ...] = (256, 128, 128, 64)     # os 64, 128, 256 and the global map
    proj_channels: tuple[int, ...] = (512, 256, 256, 128, 128, 64)
    aspect_ratios: tuple[tuple[int, ...], ...] = ((2, 3),) * 5 + ((2,),)
    min_scale: float = 0.1
    max_scale: float = 1.05
    center_variance: float = 0.1
    size_variance: float = 0.2
    score_threshold: float = 0.05       # v1 release: 0.05; v2 release: 0.01
    pre_nms_top_k: int = 0              # per class before NMS (v2 release: 400; 0 = all)
    nms_iou: float = 0.5
    max_detections: int = 200           # v1 release: per class; v2 release: per image
    per_image_limit: bool = False


def _separable(in_ch: int, out_ch: int, *, stride: int, act: bool, predict: bool = False) -> nn.Sequential:
    seq = nn.Sequential()
    seq.dw = ConvNormAct(in_ch, in_ch, 3, stride=stride, groups=in_ch, act=None)
    seq.pw = ConvNormAct(in_ch, out_ch, 1, norm=not predict, act=nn.ReLU if act else None, bias=predict)
    return seq


class GlobalMap(nn.Module):
    """Global average -> 1x1 conv (no norm, no bias) -> ReLU: the last, 1x1 feature map."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv(x.mean(dim=(-2, -1), keepdim=True)))


class SSDHead(nn.Module):
    def __init__(self, in_ch: int, proj_ch: int, outputs: int, *, last: bool) -> None:
        super().__init__()
        self.proj = _relu_proj(in_ch, proj_ch) if not last and proj_ch != in_ch else None
        ch = proj_ch if self.proj is not None else in_ch
        self.predict = (ConvNormAct(ch, outputs, 1, norm=False, act=None, bias=True) if last
                        else _separable(ch, outputs, stride=1, act=False, predict=True))

    def forward(self, x: Tensor) -> Tensor:
        return self.predict(x if self.proj is None else self.proj(x))


def _relu_proj(i: int, o: int) -> ConvNormAct:
    return ConvNormAct(i, o, 1, act=nn.ReLU)


class SSDLite(Identified, nn.Module):
    classifier_prefixes = tuple(f"ssd_heads.{i}.predict." for i in range(6))

    def __init__(self, backbone: MobileViTFeatures, num_classes: int, cfg: SSDConfig = SSDConfig()) -> None:
        super().__init__()
        self.backbone, self.num_classes, self.head_cfg = backbone, num_classes, cfg
        self.identity = replace_task(backbone.identity, "detection", num_classes)
        self._sizes: dict[tuple[int, int], list[tuple[int, int]]] = {}
        c4, c5 = (f["num_chs"] for f in backbone.feature_info[-2:])
        e = cfg.extra_channels
        self.extra_layers = nn.ModuleList([_separable(c5, e[0], stride=2, act=True),
                                           _separable(e[0], e[1], stride=2, act=True),
                                           _separable(e[1], e[2], stride=2, act=True), GlobalMap(e[2], e[3])])
        self.num_anchors = [2 + 2 * len(r) for r in cfg.aspect_ratios]
        self.ssd_heads = nn.ModuleList([
            SSDHead(c, p, a * (4 + num_classes), last=i == 5)
            for i, (c, p, a) in enumerate(zip((c4, c5, *e), cfg.proj_channels, self.num_anchors))])

    def feature_maps(self, x: Tensor) -> list[Tensor]:
        maps = self.backbone(x)[-2:]
        for layer in self.extra_layers:  # chained: each extra layer takes the previous map
            maps.append(layer(maps[-1]))
        return maps

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        cls, box = [], []
        maps = self.feature_maps(x)
        for i, head in enumerate(self.ssd_heads):  # (TorchScript iterates a ModuleList only on its own)
            y = head(maps[i])                                                # [B, A*(4+C), h, w]
            y = y.permute(0, 2, 3, 1).reshape(y.shape[0], -1, 4 + self.num_classes)  # [B, h*w*A, 4+C]
            box.append(y[..., :4])
            cls.append(y[..., 4:])
        return torch.cat(cls, dim=1), torch.cat(box, dim=1)

    def feature_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Spatial sizes of the six maps for an input size (cached per size)."""
        if (height, width) not in self._sizes:  # one probe forward per new size: odd maps are resized inside blocks
            p, was_training = next(self.parameters()), self.training
            self.eval()  # eval mode: the probe must not touch BatchNorm statistics
            try:
                with torch.no_grad():
                    maps = self.feature_maps(torch.zeros(1, self.backbone.in_chans, height, width, dtype=p.dtype,
                                                       device=p.device))
            finally:
                self.train(was_training)
            self._sizes[(height, width)] = [tuple(m.shape[-2:]) for m in maps]
        return self._sizes[(height, width)]

    def anchors(self, height: int, width: int) -> Tensor:
        """Priors [A, 4] as (cx, cy, w, h) in [0, 1], in the order of `forward`'s outputs."""
        return _anchors(tuple(self.feature_sizes(height, width)), self.head_cfg)

    # The official centre-form box coding against (cx, cy, w, h) priors, kept by hand: torchvision's BoxCoder codes
    # against corner boxes (priors converted there and back: rounding) and clamps the log-sizes at log(1000 / 16),
    # which the official decode does not.
    def decode(self, box_regressions: Tensor, anchors: Tensor) -> Tensor:
        """Regressions [..., A, 4] -> corner boxes (x1, y1, x2, y2) in [0, 1] units."""
        c = self.head_cfg
        centers = box_regressions[..., :2] * c.center_variance * anchors[..., 2:] + anchors[..., :2]
        sizes = torch.exp(box_regressions[..., 2:] * c.size_variance) * anchors[..., 2:]
        return box_convert(torch.cat([centers, sizes], dim=-1), "cxcywh", "xyxy")

    def encode(self, boxes_cxcywh: Tensor, anchors: Tensor) -> Tensor:
        """Inverse of `decode` for matched ground truth (cx, cy, w, h) -> regression targets."""
        c = self.head_cfg
        centers = (boxes_cxcywh[..., :2] - anchors[..., :2]) / anchors[..., 2:] / c.center_variance
        sizes = torch.log(boxes_cxcywh[..., 2:] / anchors[..., 2:]) / c.size_variance
        return torch.cat([centers, sizes], dim=-1)

    def loss(self, class_logits: Tensor, box_regressions: Tensor, targets: list[dict[str, Tensor]],
             input_size: tuple[int, int], *, iou_threshold: float = 0.5, neg_pos_ratio: int = 3) -> dict[str, Tensor]:
        """SSD multibox loss of raw outputs against per-image targets {"boxes" xyxy pixels of the input, "labels"}:
        {"loss", "cls_loss", "box_loss"} (see `ssd_loss`)."""
        anchors = self.anchors(*input_size).to(box_regressions.device, torch.float32)
        labels, box_targets = ssd_targets(targets, anchors, input_size, self.encode, iou_threshold=iou_threshold)
        return multibox_loss(class_logits, box_regressions, labels, box_targets, neg_pos_ratio=neg_pos_ratio)

    @torch.no_grad()
    def postprocess(self, class_logits: Tensor, box_regressions: Tensor, image_sizes: list[tuple[int, int]],
                    input_size: tuple[int, int]) -> list[dict[str, Tensor]]:
        """Softmax, decode, per-class score threshold and NMS; boxes in pixels of each original image (h, w)."""
        c = self.head_cfg
        anchors = self.anchors(*input_size).to(box_regressions)
        scores_all = class_logits.softmax(dim=-1)
        boxes_all = self.decode(box_regressions, anchors).clamp(0, 1)
        results = []
        for scores, boxes, (h, w) in zip(scores_all, boxes_all, image_sizes):
            keep_boxes, keep_scores, keep_labels = [], [], []
            for label in range(1, self.num_classes):  # class 0 is background
                s = scores[:, label]
                idx = torch.nonzero(s > c.score_threshold).squeeze(1)
                if c.pre_nms_top_k and idx.numel() > c.pre_nms_top_k:
                    idx = idx[s[idx].topk(c.pre_nms_top_k).indices]
                keep_boxes.append(boxes[idx])
                keep_scores.append(s[idx])
                keep_labels.append(torch.full_like(idx, label))
            b, s, lab = torch.cat(keep_boxes), torch.cat(keep_scores), torch.cat(keep_labels)
            keep = batched_nms(b, s, lab, c.nms_iou)
            if c.per_image_limit:
                keep = keep[:c.max_detections]
            else:  # at most max_detections per class, highest scores first
                rank = torch.zeros_like(keep)
                for label in lab[keep].unique():
                    sel = lab[keep] == label
                    rank[sel] = torch.arange(int(sel.sum()), device=keep.device)
                keep = keep[rank < c.max_detections]
            scale = torch.tensor([w, h, w, h], dtype=b.dtype, device=b.device)
            results.append({"boxes": b[keep] * scale, "scores": s[keep], "labels": lab[keep]})
        return results

    def reset_classifier(self, num_classes: int) -> None:
        """New class count: prediction convs are rebuilt (they interleave box and class outputs)."""
        self.num_classes, self.identity = num_classes, self.identity.with_classes(num_classes)
        for head, a in zip(self.ssd_heads, self.num_anchors):
            last = isinstance(head.predict, ConvNormAct)
            in_ch = head.predict.conv.in_channels if last else head.predict.dw.conv.in_channels
            head.predict = (ConvNormAct(in_ch, a * (4 + num_classes), 1, norm=False, act=None, bias=True) if last
                            else _separable(in_ch, a * (4 + num_classes), stride=1, act=False, predict=True))


@lru_cache(maxsize=16)
def _anchors(sizes: tuple[tuple[int, int], ...], cfg: SSDConfig) -> Tensor:
    """torchvision's SSD default boxes are the official priors: per location (s_k, s_k), (s'_k, s'_k), then
    (s_k sqrt(r), s_k / sqrt(r)) and its transpose per ratio, centres ((x + 0.5) / W, (y + 0.5) / H) row-major over
    each map, widths and heights clipped to [0, 1]. It gives corners; back to (cx, cy, w, h) they are the official
    priors to float rounding (1.2e-7 at 320x320)."""
    scales = torch.linspace(cfg.min_scale, cfg.max_scale, len(sizes) + 1).tolist()
    boxes = DefaultBoxGenerator([sorted(set(r)) for r in cfg.aspect_ratios], scales=scales, clip=True)
    unit = ImageList(torch.empty(1, 0, 1, 1), [(1, 1)])          # an image of size 1: boxes in [0, 1] units
    corners = boxes(unit, [torch.empty(1, 0, h, w) for h, w in sizes])[0]
    return box_convert(corners, "xyxy", "cxcywh")
