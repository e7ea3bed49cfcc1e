"""MobileNetV2 inverted residual (the 'MV2' block of MobileViT, Sandler et al. 2018)."""
from __future__ import annotations

from torch import Tensor, nn

from .conv import ConvNormAct, make_divisible


class InvertedResidual(nn.Module):
    """1x1 expand -> 3x3 depthwise (stride, dilation) -> 1x1 project (no activation); identity when shapes allow."""

    def __init__(self, in_ch: int, out_ch: int, *, stride: int = 1, expand: float = 2, dilation: int = 1) -> None:
        super().__init__()
        # The expansion is relative to the *input* channels, as in the official code.
        hidden = make_divisible(round(in_ch * expand), 8)
        self.expand = ConvNormAct(in_ch, hidden, 1)
        self.dw = ConvNormAct(hidden, hidden, 3, stride=stride, dilation=dilation, groups=hidden)
        self.project = ConvNormAct(hidden, out_ch, 1, act=None)
        self.use_residual = stride == 1 and in_ch == out_ch

    def forward(self, x: Tensor) -> Tensor:
        y = self.project(self.dw(self.expand(x)))
        return x + y if self.use_residual else y
