"""Export-time rewrites for edge delegates (XNNPACK): the same function, written with the ops the delegate runs.

As the model is written, an ExecuTorch .pte of MobileViTv3-XXS splits into 50 XNNPACK partitions around ops left to
the slow portable runtime: LayerNorm and GroupNorm (no XNNPACK kernel), the where/any/eq guards of the
scaled_dot_product_attention decomposition, `unbind`/`split`/`expand`/`sum` copies. `edge_friendly(model)` swaps
those modules for ones built from slices, 3-D bmm, last-dim softmax and 4-D means over dims (2, 3) (the only mean
XNNPACK lowers), so the whole network is one partition (fp32 xxs at 256x256: 48.8 -> 11.7 ms, one thread).
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from ..layers.attention import LinearSelfAttention, MultiHeadAttention


class BmmAttention(nn.Module):
    """`MultiHeadAttention` as slices -> bmm -> softmax(-1) -> bmm (shares the source's projections)."""

    def __init__(self, src: MultiHeadAttention) -> None:
        super().__init__()
        self.heads, self.qkv_proj, self.out_proj = src.heads, src.qkv_proj, src.out_proj

    def _split_heads(self, t: Tensor, b: int, n: int, dh: int) -> Tensor:
        return t.reshape(b, n, self.heads, dh).permute(0, 2, 1, 3).reshape(b * self.heads, n, dh)  # [B'h, N, dh]

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        dh = d // self.heads
        qkv = self.qkv_proj(x)                                                 # [B', N, 3d]: [q | k | v]
        q, k, v = (self._split_heads(qkv[..., i * d:(i + 1) * d], b, n, dh) for i in range(3))
        attn = torch.bmm(q * dh ** -0.5, k.transpose(1, 2)).softmax(dim=-1)   # [B'h, N, N]
        y = torch.bmm(attn, v).reshape(b, self.heads, n, dh).permute(0, 2, 1, 3)  # [B', N, h, dh]
        return self.out_proj(y.reshape(b, n, d))


class MeanLayerNorm(nn.Module):
    """LayerNorm over the last dim of [..., N, d] through means of a [-1, N, d, 1] view."""

    def __init__(self, src: nn.LayerNorm) -> None:
        super().__init__()
        self.weight, self.bias, self.eps = src.weight, src.bias, src.eps

    def forward(self, x: Tensor) -> Tensor:
        x4 = x.reshape(-1, x.shape[-2], x.shape[-1], 1)                        # [B', N, d, 1]
        centred = x4 - x4.mean(dim=(2, 3), keepdim=True)
        var = (centred * centred).mean(dim=(2, 3), keepdim=True)
        return (centred * torch.rsqrt(var + self.eps)).reshape(x.shape) * self.weight + self.bias


class MeanGroupNorm(nn.Module):
    """GroupNorm(1, C) on [B, C, H, W]: one statistic per sample, through means of a [B, 1, C, H*W] view."""

    def __init__(self, src: nn.GroupNorm) -> None:
        super().__init__()
        self.weight, self.bias, self.eps = src.weight, src.bias, src.eps

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        x4 = x.reshape(b, 1, c, h * w)
        centred = x4 - x4.mean(dim=(2, 3), keepdim=True)
        var = (centred * centred).mean(dim=(2, 3), keepdim=True)
        y = (centred * torch.rsqrt(var + self.eps)).reshape(b, c, h, w)
        return y * self.weight.reshape(c, 1, 1) + self.bias.reshape(c, 1, 1)


class GridLinearAttention(LinearSelfAttention):
    """`LinearSelfAttention` itself, with only its `gate` rewritten: the sum over the N patches as a 4-D mean and the
    context broadcast instead of expanded. Map pixel (i*ph + r, j*pw + c) is pixel (r, c) of patch (i, j)."""

    def __init__(self, src: LinearSelfAttention) -> None:
        nn.Module.__init__(self)   # shares the source's projections: nothing new to build
        self.dim, self.patch, self.qkv_proj, self.out_proj = src.dim, src.patch, src.qkv_proj, src.out_proj
        self.attn_drop = nn.Identity()   # eval-only copy: no dropout op left in the graph

    @staticmethod
    def gate(weighted: Tensor, values: Tensor, ph: int, pw: int) -> Tensor:
        b, d, h, w = weighted.shape
        nh, nw = h // ph, w // pw
        weighted = weighted.reshape(b, d, nh, ph, nw, pw).permute(0, 1, 3, 5, 2, 4)      # [B, d, ph, pw, nh, nw]
        context = weighted.reshape(b, d * ph * pw, nh, nw).mean(dim=(2, 3), keepdim=True) * float(nh * nw)
        context = context.reshape(b, d, 1, ph, 1, pw)                                     # sum over the N patches
        return (values.reshape(b, d, nh, ph, nw, pw) * context).reshape(b, d, h, w)


def _replacement(module: nn.Module) -> nn.Module | None:
    if isinstance(module, MultiHeadAttention):
        return BmmAttention(module)
    if isinstance(module, LinearSelfAttention):
        return GridLinearAttention(module)
    if isinstance(module, nn.LayerNorm) and module.elementwise_affine and len(module.normalized_shape) == 1:
        return MeanLayerNorm(module)
    if isinstance(module, nn.GroupNorm) and module.num_groups == 1 and module.affine:
        return MeanGroupNorm(module)
    return None


def edge_friendly(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` with the modules above swapped in (parameters shared with the copy, not with
    `model`); outputs equal `model`'s to float rounding. Idempotent; other modules are untouched."""
    out = copy.deepcopy(model).eval()
    for parent in list(out.modules()):
        for name, child in list(parent.named_children()):
            new = _replacement(child)
            if new is not None:
                setattr(parent, name, new)
    return out
