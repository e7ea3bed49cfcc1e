"""Export-time rewrites for edge delegates (XNNPACK): the same function, written with the ops the delegate runs.

As the model is written, an ExecuTorch .pte of MobileViTv3-XXS splits into 50 XNNPACK partitions around ops left to
the slow portable runtime: LayerNorm and GroupNorm (no XNNPACK kernel), the where/any/eq guards of the
scaled_dot_product_attention decomposition, `unbind`/`split`/`expand`/`sum` copies, and the classifier's global
mean (XNNPACK lowers a mean over dims (2, 3) of a 4-D tensor with keepdim only). `edge_friendly(model)` swaps those
modules for ones built from slices, 3-D bmm, last-dim softmax and such means, so XNNPACK runs the whole network, both
families, float and INT8, in one partition (tests/test_edge.py). XNNPACK computes convs in a channels-last layout
and transposes a map back before any reshape of it, so the GroupNorm of the v2 family reduces without reshaping.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers.attention import LinearSelfAttention, MultiHeadAttention
from ..models.backbone import MobileViT


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
    """GroupNorm(1, C) on [B, C, H, W]: one statistic per sample, as the per-channel spatial means (XNNPACK's global
    average pooling) averaged over the channels by a 1x1 conv of weight 1/C. Nothing reshapes the map: XNNPACK keeps
    it in its channels-last layout (a reshape of a channels-last map costs two transposes of the whole map)."""

    def __init__(self, src: nn.GroupNorm) -> None:
        super().__init__()
        self.weight, self.bias, self.eps = src.weight, src.bias, src.eps
        c = src.num_channels
        self.register_buffer("channel_mean", torch.full((1, c, 1, 1), 1.0 / c), persistent=False)

    def _mean(self, t: Tensor) -> Tensor:
        return F.conv2d(t.mean(dim=(2, 3), keepdim=True), self.channel_mean)               # [B, 1, 1, 1]

    def forward(self, x: Tensor) -> Tensor:
        centred = x - self._mean(x)
        var = self._mean(centred * centred)
        y = centred * torch.rsqrt(var + self.eps)
        return y * self.weight.reshape(1, -1, 1, 1) + self.bias.reshape(1, -1, 1, 1)


class GridLinearAttention(LinearSelfAttention):
    """`LinearSelfAttention` itself, with only its `gate` rewritten: the sum over the N patches as a 4-D mean and the
    context broadcast instead of expanded. Map pixel (i*ph + r, j*pw + c) is pixel (r, c) of patch (i, j).
    (Measured slower: the same sum as a one-hot strided grouped conv, a global mean and a transposed conv, which
    avoids reshaping the channels-last map but runs XNNPACK's generic grouped-conv path; v3-0.5, 1 thread, 256x256:
    39.0 against 33.2 ms.)"""

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


class PooledDrop(nn.Module):
    """A classifier's global average pool with keepdim (the only mean XNNPACK lowers), flattened, then the
    backbone's own `head_drop`: it stands in for that dropout in a backbone whose pooling is switched off."""

    def __init__(self, drop: nn.Module) -> None:
        super().__init__()
        self.drop = drop

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(x.mean(dim=(2, 3), keepdim=True).flatten(1))                    # [B, C, h, w] -> [B, C]


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
        if isinstance(parent, MobileViT) and parent.global_pool == "avg" and not parent.features_only:
            parent.global_pool, parent.head_drop = "", PooledDrop(parent.head_drop)   # mean without keepdim: portable
    return out
