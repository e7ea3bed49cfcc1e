"""The two attentions of the MobileViT families.

- `MultiHeadAttention`: MobileViTv1 / v3 (v1-based) self-attention on [B', N, d] tokens, through
  `scaled_dot_product_attention` (fused kernels on every backend; scale 1/sqrt(d_head) as in the official code).
- `LinearSelfAttention`: MobileViTv2's separable self-attention over the N patches of each of the P pixel
  positions (Mehta & Rastegari 2022): a single query scores the N patches, the scored keys pool into one context
  vector that gates ReLU(values). It runs on the feature map directly, without unfolding it (see the class).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class MultiHeadAttention(nn.Module):
    def __init__(self, dim: int, heads: int, *, attn_dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention dim {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.attn_dropout = attn_dropout
        self.qkv_proj = nn.Linear(dim, 3 * dim)  # columns [q | k | v], heads slower than head channels
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        qkv = self.qkv_proj(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B', h, N, d_h]
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_dropout if self.training else 0.0)
        return self.out_proj(y.transpose(1, 2).reshape(b, n, d))


class LinearSelfAttention(nn.Module):
    """Separable self-attention. With `patch` p > 0 it works on the feature map [B, d, H, W] itself: unfolding into
    [B, d, P, N] only relabels pixels, and everything but the softmax and the pooled sum over N is pointwise, so
    those two run on views of the map instead (no unfold/fold copies of d-channel maps). `patch=0`: the input is a
    grid [B, d, P, N] (seen as a map of P x 1 patches). `gate` is the one step written for speed (export's
    edge_graph overrides it with the ops an edge delegate runs); the rest is the function itself."""

    def __init__(self, dim: int, *, patch: int = 0, attn_dropout: float = 0.0) -> None:
        super().__init__()
        self.dim, self.patch = dim, patch
        self.qkv_proj = nn.Conv2d(dim, 1 + 2 * dim, 1)  # channels [query (1) | key (d) | value (d)]
        self.attn_drop = nn.Dropout(attn_dropout)
        self.out_proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, d, h, w = x.shape
        ph, pw = (self.patch, self.patch) if self.patch else (h, 1)
        nh, nw = h // ph, w // pw  # N = nh * nw patches of P = ph * pw pixels; row i*ph + r holds patch pixel row r
        qkv = self.qkv_proj(x)                                                            # [B, 1 + 2d, H, W]
        q, k, v = qkv[:, :1], qkv[:, 1:1 + d], qkv[:, 1 + d:]                             # views, no copies
        scores = q.reshape(b, nh, ph, nw, pw).permute(0, 2, 4, 1, 3).reshape(b, ph * pw, nh * nw)  # [B, P, N]
        scores = self.attn_drop(scores.softmax(dim=-1))                                   # over the N patches
        scores = scores.reshape(b, ph, pw, nh, nw).permute(0, 3, 1, 4, 2).reshape(b, 1, h, w)  # back on the map
        return self.out_proj(self.gate(k * scores, F.relu(v), ph, pw))

    @staticmethod
    def gate(weighted: Tensor, values: Tensor, ph: int, pw: int) -> Tensor:
        """values [B, d, H, W] times the context: `weighted` [B, d, H, W] summed over the N patches, per patch pixel.
        Each product keeps a contiguous row of W pixels as its inner loop (fast in both memory formats): the
        per-patch-pixel context is tiled along a row."""
        b, d, h, w = weighted.shape
        nh, nw = h // ph, w // pw
        context = weighted.reshape(b, d, nh, ph, w).sum(dim=2)                            # [B, d, ph, W]: sum rows
        context = context.reshape(b, d, ph, nw, pw).sum(dim=3, keepdim=True)              # [B, d, ph, 1, pw]
        context = context.expand(b, d, ph, nw, pw).reshape(b, d, 1, ph, w)                # tiled along W
        return (values.reshape(b, d, nh, ph, w) * context).reshape(b, d, h, w)
