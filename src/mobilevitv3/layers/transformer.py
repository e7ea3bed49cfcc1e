"""Pre-norm transformer layer shared by both families (the `global_rep` of a MobileViT block).

    x = x + drop(attn(norm1(x)));  x = x + drop(fc2(drop_ffn(SiLU(fc1(norm2(x))))))
(each residual branch optionally under stochastic depth, `drop_path`; the official recipes use none)

v1 family: tokens [B*P, N, d], LayerNorm, multi-head attention, Linear FFN.
v2 family: GroupNorm(1) (official `LayerNorm2D`: one statistic over the whole d*P*N map of a sample, not per
token), separable linear attention, 1x1-conv FFN. Norm and FFN are blind to the order of the P*N positions, so the
v2 layers run on the [B, d, H, W] map itself (`patch` > 0) and nothing is unfolded; `patch=0` takes [B, d, P, N].
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from .attention import LinearSelfAttention, MultiHeadAttention

Attention = Literal["mhsa", "linear"]


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, *, conv: bool, dropout: float, ffn_dropout: float) -> None:
        super().__init__()
        layer = (lambda i, o: nn.Conv2d(i, o, 1)) if conv else nn.Linear
        self.fc1 = layer(dim, hidden)
        self.act = nn.SiLU(inplace=True)  # on fc1's fresh output: saves a buffer and a pass
        self.drop_ffn = nn.Dropout(ffn_dropout)
        self.fc2 = layer(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop_ffn(self.act(self.fc1(x)))))


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): in training, a residual branch is dropped for a whole sample (row of
    the batch) with probability `p` and kept ones are scaled by 1/(1-p); identity in eval."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        flat = x.flatten(1)                                                   # [B, rest]: any rank, traceable
        mask = torch.rand_like(flat[:, :1]).add_(keep).floor_().div_(keep)  # [B, 1]: 1/keep with prob. keep
        return (flat * mask).view_as(x)


def global_norm(dim: int, attention: Attention) -> nn.Module:
    return nn.LayerNorm(dim) if attention == "mhsa" else nn.GroupNorm(1, dim)


class TransformerLayer(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, *, attention: Attention, heads: int = 4, dropout: float = 0.0,
                 attn_dropout: float = 0.0, ffn_dropout: float = 0.0, patch: int = 0,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = global_norm(dim, attention)
        self.attn = (MultiHeadAttention(dim, heads, attn_dropout=attn_dropout) if attention == "mhsa"
                     else LinearSelfAttention(dim, patch=patch, attn_dropout=attn_dropout))
        self.drop = nn.Dropout(dropout)
        self.norm2 = global_norm(dim, attention)
        self.mlp = Mlp(dim, ffn_dim, conv=attention == "linear", dropout=dropout, ffn_dropout=ffn_dropout)
        self.drop_path = DropPath(drop_path) if drop_path else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.drop(self.attn(self.norm1(x))))
        return x + self.drop_path(self.mlp(self.norm2(x)))
