"""The MobileViT block, v1, v2 and v3 (Mehta & Rastegari 2021/2022; Wadekar & Chaurasia 2022) in one module.

local_rep (kxk conv + 1x1 to d) -> unfold into 2x2-patch sequences -> global_rep (transformer layers + norm)
-> fold -> projection/fusion (-> + input); the v2 family's layers act on the map itself, without the unfold (see
transformer.py). MobileViTv3's four changes are independent switches of `BlockConfig`: `fusion_kernel` (3 -> 1),
`fuse` ("input" -> "local"), `residual`, `local_dw` (full -> depthwise local conv).
Where the two official code bases differ (`family`), the code wins over the paper text:
- v1 family: fusion input is cat(local-or-input, global); odd maps are resized bilinearly (align_corners=False)
  for the transformer and back; conv_proj (d->C) has SiLU and a separate `fusion` conv follows.
- v2 family: cat(global, local) goes straight into conv_proj (BN, no activation); an odd input is resized up
  (align_corners=True) and the block output keeps the larger size; the local conv can be dilated.
The size-dependent steps are small functions that `torch.fx` keeps as leaves (a traced graph cannot branch on
a size), and `forward` reads plain attributes only, so the block scripts and traces.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn

from .conv import ConvNormAct
from .patches import from_tokens, to_tokens
from .transformer import TransformerLayer, global_norm


def patch_multiple(x: Tensor, patch: int, align_corners: bool) -> Tensor:
    """`x` resized (bilinear) up to the next multiple of `patch` in height and width; `x` itself if it is one."""
    h, w = x.shape[-2], x.shape[-1]
    # non-negative operands only: an exporter's integer division truncates, which floors only those
    size = [(h + patch - 1) // patch * patch, (w + patch - 1) // patch * patch]
    if size[0] == h and size[1] == w:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


def resize_like(x: Tensor, ref: Tensor) -> Tensor:
    """`x` resized (bilinear) to `ref`'s height and width; `x` itself if it has them."""
    if x.shape[-2] == ref.shape[-2] and x.shape[-1] == ref.shape[-1]:
        return x
    return F.interpolate(x, size=[ref.shape[-2], ref.shape[-1]], mode="bilinear", align_corners=False)


def fold_like(tokens: Tensor, ref: Tensor, patch: int) -> Tensor:
    """Tokens [B*P, N, d] back into a map of `ref`'s size, in `ref`'s memory format."""
    return from_tokens(tokens, patch, ref.shape[-2], ref.shape[-1],
                       channels_last=ref.is_contiguous(memory_format=torch.channels_last))


for _leaf in ("patch_multiple", "resize_like", "fold_like"):
    torch.fx.wrap(_leaf)


@dataclass(frozen=True)
class BlockConfig:
    family: Literal["v1", "v2"]                 # v1: multi-head attention on tokens; v2: separable attention on grids
    fuse: Literal["none", "input", "local"]     # what is concatenated with the global features
    fusion_kernel: int = 1                      # kernel of the conv that fuses them
    residual: bool = False                      # add the block input to the output
    local_dw: bool = False                      # depthwise (instead of full) kxk conv in local_rep


class MobileViTBlock(nn.Module):
    def __init__(self, channels: int, attn_dim: int, ffn_dim: int, depth: int, cfg: BlockConfig, *,
                 heads: int = 4, dropout: float = 0.0, attn_dropout: float = 0.0, ffn_dropout: float = 0.0,
                 dilation: int = 1, patch: int = 2, drop_path: tuple[float, ...] = ()) -> None:
        super().__init__()
        self.cfg, self.patch = cfg, patch
        # plain copies of the switches `forward` reads (TorchScript cannot read a dataclass)
        self.v1, self.residual = cfg.family == "v1", cfg.residual
        self.concat, self.fuse_input = cfg.fuse != "none", cfg.fuse == "input"
        attention = "mhsa" if cfg.family == "v1" else "linear"
        self.local_rep = nn.Sequential()
        self.local_rep.conv_kxk = ConvNormAct(channels, channels, 3, dilation=dilation,
                                              groups=channels if cfg.local_dw else 1)
        self.local_rep.conv_1x1 = ConvNormAct(channels, attn_dim, 1, norm=False, act=None)
        self.global_rep = nn.Sequential(*[
            TransformerLayer(attn_dim, ffn_dim, attention=attention, heads=heads, dropout=dropout,
                             attn_dropout=attn_dropout, ffn_dropout=ffn_dropout,
                             patch=patch if attention == "linear" else 0,
                             drop_path=drop_path[i] if drop_path else 0.0) for i in range(depth)])
        self.global_rep.append(global_norm(attn_dim, attention))
        extra = {"none": 0, "input": channels, "local": attn_dim}[cfg.fuse]
        if cfg.family == "v1":
            self.conv_proj = ConvNormAct(attn_dim, channels, 1)
            self.fusion = ConvNormAct(extra + channels, channels, cfg.fusion_kernel) if extra else None
        else:
            self.conv_proj = ConvNormAct(attn_dim + extra, channels, cfg.fusion_kernel, act=None)
            self.fusion = None

    def forward(self, x: Tensor) -> Tensor:
        return self._forward_v1(x) if self.v1 else self._forward_v2(x)

    def _forward_v1(self, x: Tensor) -> Tensor:
        local = self.local_rep(x)                                           # [B, d, H, W]
        g = patch_multiple(local, self.patch, False)                        # odd maps: resized for the patches
        g = fold_like(self.global_rep(to_tokens(g, self.patch)), g, self.patch)  # via [B*P, N, d]
        y = self.conv_proj(resize_like(g, local))                           # [B, C, H, W]
        if self.fusion is not None:                                         # v1 order: (input-or-local, global)
            y = self.fusion(torch.cat([x if self.fuse_input else local, y], dim=1))
        return x + y if self.residual else y

    def _forward_v2(self, x: Tensor) -> Tensor:
        x = patch_multiple(x, self.patch, True)  # the official v2 block resizes its input and keeps the larger size
        local = self.local_rep(x)                                           # [B, d, H, W]
        g = self.global_rep(local)  # patch-wise attention on the map itself, no unfold/fold (see attention.py)
        if self.concat:                                                     # v2 order: (global, local-or-input)
            g = torch.cat([g, x if self.fuse_input else local], dim=1)
        y = self.conv_proj(g)
        return x + y if self.residual else y
