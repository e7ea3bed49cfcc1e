"""Semantic segmentation: DeepLabv3 (ASPP, Chen et al. 2017) and PSPNet (Zhao et al. 2017) on any zoo backbone.

Heads see the backbone only through its features_only contract: `backbone(x)` (the maps) and `feature_info`.
The official v1-based release uses a 256-channel ASPP without auxiliary head; the v2-based one 512 channels,
align_corners=True upsampling and an auxiliary FCN head on layer4 (training only, weight 0.4) -- `SegHeadConfig`
holds those differences as data.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import ConvNormAct
from .backbone import MobileViTFeatures
from .identity import Identified, replace_task


@dataclass(frozen=True)
class SegHeadConfig:
    kind: Literal["deeplabv3", "pspnet"]
    channels: int = 512
    rates: tuple[int, ...] = (6, 12, 18)        # ASPP dilations
    pool_sizes: tuple[int, ...] = (1, 2, 3, 6)  # PSP bins
    aux_head: bool = True
    align_corners: bool = True                  # of the final upsampling and the PSP branches
    dropout: float = 0.1
    aspp_dropout: float = 0.0                   # v1 release: element-wise Dropout(0.1) after the ASPP projection


def _relu_cna(i: int, o: int, k: int = 1, **kw) -> ConvNormAct:
    return ConvNormAct(i, o, k, act=nn.ReLU, **kw)


class ASPP(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, rates: tuple[int, ...]) -> None:
        super().__init__()
        self.branches = nn.ModuleList([_relu_cna(in_ch, out_ch)] +
                                      [_relu_cna(in_ch, out_ch, 3, dilation=r) for r in rates])
        self.pool = _relu_cna(in_ch, out_ch)  # image-level branch, applied to the 1x1 global average
        self.project = _relu_cna(out_ch * (len(rates) + 2), out_ch)

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.pool(x.mean(dim=(-2, -1), keepdim=True))
        pooled = F.interpolate(pooled, x.shape[-2:], mode="bilinear", align_corners=False)
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class PyramidPooling(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, pool_sizes: tuple[int, ...], align_corners: bool) -> None:
        super().__init__()
        red = in_ch // len(pool_sizes) // 16 * 16
        self.pool_sizes, self.align_corners = pool_sizes, align_corners
        self.branches = nn.ModuleList([_relu_cna(in_ch, red) for _ in pool_sizes])
        self.project = _relu_cna(in_ch + red * len(pool_sizes), out_ch, 3)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        pyramid = [F.interpolate(b(F.adaptive_avg_pool2d(x, s)), size, mode="bilinear",
                                 align_corners=self.align_corners) for s, b in zip(self.pool_sizes, self.branches)]
        return self.project(torch.cat([x, *pyramid], dim=1))  # official order: the input first


class SegHead(nn.Module):
    def __init__(self, in_ch: int, num_classes: int, cfg: SegHeadConfig) -> None:
        super().__init__()
        if cfg.kind == "deeplabv3":
            self.aspp = ASPP(in_ch, cfg.channels, cfg.rates)
        else:
            self.psp = PyramidPooling(in_ch, cfg.channels, cfg.pool_sizes, cfg.align_corners)
        # training only, no parameters: the v1 ASPP block's own dropout (before the classifier's Dropout2d)
        self.aspp_drop = nn.Dropout(cfg.aspp_dropout) if cfg.kind == "deeplabv3" and cfg.aspp_dropout else None
        self.drop = nn.Dropout2d(cfg.dropout)
        self.classifier = ConvNormAct(cfg.channels, num_classes, 1, norm=False, act=None, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.aspp(x) if hasattr(self, "aspp") else self.psp(x)
        if self.aspp_drop is not None:
            x = self.aspp_drop(x)
        return self.classifier(self.drop(x))


class AuxHead(nn.Module):
    def __init__(self, in_ch: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.conv = _relu_cna(in_ch, max(in_ch // 4, 128), 3)
        self.drop = nn.Dropout2d(dropout)
        self.classifier = ConvNormAct(max(in_ch // 4, 128), num_classes, 1, norm=False, act=None, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.drop(self.conv(x)))


class SegmentationModel(Identified, nn.Module):
    """Backbone (output stride 8 or 16) + head; eval `forward` returns logits [B, classes, H, W] at the input size,
    training `forward` returns (logits, aux_logits) when the auxiliary head exists."""

    classifier_prefixes = ("head.classifier.", "aux_head.classifier.")

    def __init__(self, backbone: MobileViTFeatures, num_classes: int, head: SegHeadConfig) -> None:
        super().__init__()
        self.backbone, self.num_classes, self.head_cfg = backbone, num_classes, head
        self.align_corners = head.align_corners     # a plain copy for `forward` (TorchScript reads no dataclass)
        self.identity = replace_task(backbone.identity, "segmentation", num_classes)
        info = backbone.feature_info
        self.head = SegHead(info[-1]["num_chs"], num_classes, head)
        self.aux_head = AuxHead(info[-2]["num_chs"], num_classes, head.dropout) if head.aux_head else None

    def forward(self, x: Tensor, size: list[int] | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """`size` (h, w): upsample the logits straight to it (the v2 evaluation returns them at the original image
        size from the 1/os map) instead of to the input size."""
        out_size = [x.shape[-2], x.shape[-1]] if size is None else [size[0], size[1]]
        feats = self.backbone(x)
        logits = self._upsample(self.head(feats[-1]), out_size)
        if self.training and self.aux_head is not None:
            return logits, self._upsample(self.aux_head(feats[-2]), out_size)
        return logits

    def _upsample(self, t: Tensor, size: list[int]) -> Tensor:
        return F.interpolate(t, size=size, mode="bilinear", align_corners=self.align_corners)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes, self.identity = num_classes, self.identity.with_classes(num_classes)
        self.head.classifier = ConvNormAct(self.head.classifier.conv.in_channels, num_classes, 1, norm=False,
                                           act=None, bias=True)
        if self.aux_head is not None:
            self.aux_head.classifier = ConvNormAct(self.aux_head.classifier.conv.in_channels, num_classes, 1,
                                                   norm=False, act=None, bias=True)
