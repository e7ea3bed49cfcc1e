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
    """Separable self-attention. With `patch` p > 0 it works on the feature map [B, d, H, W] itself: the 2-D
    unfold into [B, d, P, N] is only a relabelling of pixels, and everything but the softmax and the pooled sum over
    N is pointwise, so both run on a strided view instead (no unfold/fold copies). `patch=0`: input is a grid."""

    def __init__(self, dim: int, *, patch: int = 0, attn_dropout: float = 0.0) -> None:
        super().__init__()
        self.dim, self.patch = dim, patch
        self.qkv_proj = nn.Conv2d(dim, 1 + 2 * dim, 1)  # channels [query (1) | key (d) | value (d)]
        self.attn_drop = nn.Dropout(attn_dropout)
        self.out_proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        ph, pw = (self.patch, self.patch) if self.patch else (h, 1)  # a grid [B, d, P, N] is a map of 'P x 1' patches
        nh, nw = h // ph, w // pw
        q, k, v = self.qkv_proj(x).split([1, self.dim, self.dim], dim=1)  # [B, 1, H, W], [B, d, H, W] x2
        # N = (nh, nw) patches, P = (ph, pw) pixels inside a patch: softmax over N for each of the P pixels.
        scores = q.reshape(b, nh, ph, nw, pw).permute(0, 2, 4, 1, 3).reshape(b, ph * pw, nh * nw)  # [B, P, N]
        scores = self.attn_drop(scores.softmax(dim=-1))
        scores = scores.reshape(b, 1, ph, pw, nh, nw).permute(0, 1, 4, 2, 5, 3)  # view [B, 1, nh, ph, nw, pw]
        grid = (b, self.dim, nh, ph, nw, pw)
        context = (k.reshape(grid) * scores).sum(dim=(2, 4), keepdim=True)  # [B, d, 1, ph, 1, pw]
        return self.out_proj((F.relu(v).reshape(grid) * context).reshape(b, self.dim, h, w))
