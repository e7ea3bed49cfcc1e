"""Convolution + normalisation + activation, the unit every MobileViT stage is built from.

`make_divisible` is the TF-MobileNet channel rounding the official code uses for every width. Folding the
BatchNorm into the conv for inference is an explicit step (`layers.fuse.fuse`), never a hidden switch of eval mode.
"""
from __future__ import annotations

import inspect

from torch import nn


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round `value` to a multiple of `divisor`, never going more than 10% below it."""
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


class ConvNormAct(nn.Sequential):
    """Conv2d -> BatchNorm2d (optional) -> activation (optional), 'same' padding for odd kernels."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, *, stride: int = 1, dilation: int = 1,
                 groups: int = 1, norm: bool = True, act: type[nn.Module] | None = nn.SiLU,
                 bias: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding=(kernel - 1) // 2 * dilation,
                              dilation=dilation, groups=groups, bias=bias)
        if norm:
            self.norm = nn.BatchNorm2d(out_ch)
        if act is not None:  # in place where the activation allows it: it acts on the conv/norm's fresh output
            self.act = act(inplace=True) if "inplace" in inspect.signature(act).parameters else act()
