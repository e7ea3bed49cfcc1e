"""The two attentions of the MobileViT families.

- `MultiHeadAttention`: MobileViTv1 / v3 (v1-based) self-attention on [B', N, d] tokens, through
  `scaled_dot_product_attention` (fused kernels on every backend; scale 1/sqrt(d_head) as in the official code).
- `LinearSelfAttention`: MobileViTv2's separable self-attention on [B, d, P, N] grids (Mehta & Rastegari 2022):
  a single query scores the N patches, the scored keys pool into one context vector that gates ReLU(values).
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
    def __init__(self, dim: int, *, attn_dropout: float = 0.0) -> None:
        super().__init__()
        self.dim = dim
        self.qkv_proj = nn.Conv2d(dim, 1 + 2 * dim, 1)  # channels [query (1) | key (d) | value (d)]
        self.attn_drop = nn.Dropout(attn_dropout)
        self.out_proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv_proj(x).split([1, self.dim, self.dim], dim=1)   # [B,1,P,N], [B,d,P,N] x2
        scores = self.attn_drop(q.softmax(dim=-1))                          # softmax over the N patches
        context = (k * scores).sum(dim=-1, keepdim=True)                    # [B, d, P, 1]
        return self.out_proj(F.relu(v) * context)

