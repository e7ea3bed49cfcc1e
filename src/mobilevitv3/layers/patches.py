"""Unfolding a feature map into 2x2-patch sequences and back, as views + one permute each way.

MobileViT attends *across* patches: sequence p holds pixel p (row-major inside the patch) of every patch, as
tokens [B*P, N, C] (v1 family, multi-head attention over the last dim). The v2 family's grid [B, C, P, N] is never
built: its layers work on the map directly (attention.py).
"""
from __future__ import annotations

from torch import Tensor


def to_tokens(x: Tensor, patch: int) -> Tensor:
    """[B, C, H, W] -> [B*P, N, C]; H and W must be multiples of `patch`."""
    b, c, h, w = x.shape
    nh, nw = h // patch, w // patch
    x = x.reshape(b, c, nh, patch, nw, patch).permute(0, 3, 5, 2, 4, 1)  # [B, ph, pw, nh, nw, C]
    return x.reshape(b * patch * patch, nh * nw, c)


def from_tokens(x: Tensor, patch: int, height: int, width: int, channels_last: bool = False) -> Tensor:
    """Inverse of `to_tokens`: [B*P, N, C] -> [B, C, H, W], contiguous or channels-last (the cheaper copy: whole
    C-vectors move, nothing is transposed)."""
    bp, _, c = x.shape
    nh, nw = height // patch, width // patch
    x = x.reshape(bp // (patch * patch), patch, patch, nh, nw, c)  # [B, ph, pw, nh, nw, C]
    if channels_last:
        x = x.permute(0, 3, 1, 4, 2, 5).reshape(-1, height, width, c)  # [B, nh, ph, nw, pw, C] = [B, H, W, C]
        return x.permute(0, 3, 1, 2)                                    # [B, C, H, W] view, channels-last memory
    return x.permute(0, 5, 3, 1, 4, 2).reshape(-1, c, height, width)   # [B, C, nh, ph, nw, pw] -> [B, C, H, W]
