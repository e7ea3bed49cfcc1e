"""Convolution + normalisation + activation, the unit every MobileViT stage is built from.

`make_divisible` is the TF-MobileNet channel rounding the official code uses for every width. In eval mode a
BatchNorm is an affine map per output channel, so `ConvNormAct` folds it into the conv weights on the fly (a few
per-channel ops) instead of running a second pass over the output; `mobilevitv3.fuse` folds it once, ahead of time.
"""
from __future__ import annotations

import inspect

import torch
from torch import Tensor, nn


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round `value` to a multiple of `divisor`, never going more than 10% below it."""
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


class FoldingConv2d(nn.Conv2d):
    """`nn.Conv2d` that can scale and shift each output channel inside the convolution: conv(x) * scale + shift,
    computed as one conv with weight W * scale and bias b * scale + shift."""

    def forward(self, x: Tensor, scale: Tensor | None = None, shift: Tensor | None = None) -> Tensor:
        if scale is None:
            return super().forward(x)
        bias = shift if self.bias is None else self.bias * scale + shift  # plain ops: every exporter knows them
        return self._conv_forward(x, self.weight * scale.reshape(-1, 1, 1, 1), bias)


class ConvNormAct(nn.Sequential):
    """Conv2d -> BatchNorm2d (optional) -> activation (optional), 'same' padding for odd kernels."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, *, stride: int = 1, dilation: int = 1,
                 groups: int = 1, norm: bool = True, act: type[nn.Module] | None = nn.SiLU,
                 bias: bool = False) -> None:
        super().__init__()
        self.conv = FoldingConv2d(in_ch, out_ch, kernel, stride, padding=(kernel - 1) // 2 * dilation,
                                  dilation=dilation, groups=groups, bias=bias)
        if norm:
            self.norm = nn.BatchNorm2d(out_ch)
        if act is not None:  # in place where the activation allows it: it acts on the conv/norm's fresh output
            self.act = act(inplace=True) if "inplace" in inspect.signature(act).parameters else act()

    def forward(self, x: Tensor) -> Tensor:
        norm, act = self._modules.get("norm"), self._modules.get("act")  # `fuse` removes the norm
        if isinstance(norm, nn.BatchNorm2d) and not norm.training and norm.affine and norm.track_running_stats:
            scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)  # [C_out]
            x = self.conv(x, scale, norm.bias - norm.running_mean * scale)
        else:
            x = self.conv(x)
            x = x if norm is None else norm(x)
        return x if act is None else act(x)
