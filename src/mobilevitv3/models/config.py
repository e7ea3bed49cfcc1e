"""Every classification architecture of the MobileViTv3 paper as data.

The v1-based rows (MobileViTv1 and MobileViTv3 XXS/XS/S) are written out; the L2 low-latency variants
(layer4's block with 2 instead of 4 transformer layers) and the v2-based widths 0.5...2.0 are derived in loops.
Figures in `PAPER` are the ones the official README / papers report, shown beside our counted ones by `list`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..layers import BlockConfig, make_divisible

V1 = BlockConfig("v1", fuse="input", fusion_kernel=3)                                   # MobileViTv1
V3_ON_V1 = BlockConfig("v1", fuse="local", fusion_kernel=1, residual=True, local_dw=True)  # MobileViTv3 XXS/XS/S
V2 = BlockConfig("v2", fuse="none", local_dw=True)                                     # MobileViTv2
V3_ON_V2 = BlockConfig("v2", fuse="local", residual=True, local_dw=True)               # MobileViTv3 0.5...2.0


@dataclass(frozen=True)
class Stage:
    channels: int
    depth: int              # inverted residuals, or transformer layers of the stage's MobileViT block
    stride: int = 2
    attn_dim: int = 0       # > 0: one strided inverted residual, then one MobileViT block of this width
    ffn_dim: int = 0


@dataclass(frozen=True)
class ModelConfig:
    stem: int
    stages: tuple[Stage, ...]
    block: BlockConfig
    expand: float                   # inverted-residual expansion (relative to the input channels)
    head_channels: int = 0          # 1x1 conv before the classifier (v1 family); 0 = none (v2 family)
    heads: int = 4                  # attention heads (v1 family)
    dropout: float = 0.0            # transformer dropout
    classifier_dropout: float = 0.0


def mv2(channels: int, depth: int, stride: int = 2) -> Stage:
    return Stage(channels, depth, stride)


def vit(channels: int, depth: int, d: int, ffn: int | None = None) -> Stage:
    return Stage(channels, depth, 2, attn_dim=d, ffn_dim=2 * d if ffn is None else ffn)


@dataclass(frozen=True)
class V1Row:
    """One v1-based variant (MobileViTv1 or MobileViTv3 XXS/XS/S): the widths and depths its paper table gives."""
    block: BlockConfig
    expand: int                         # inverted-residual expansion
    dropout: float                      # transformer dropout
    channels: tuple[int, int, int, int, int]   # output channels of layer1 ... layer5
    attn_dims: tuple[int, int, int]     # transformer width of the MobileViT blocks in layer3 ... layer5


def v1_family(row: V1Row) -> ModelConfig:
    c1, c2, *c345 = row.channels
    return ModelConfig(
        stem=16, block=row.block, expand=row.expand, head_channels=min(4 * c345[2], 960), dropout=row.dropout,
        classifier_dropout=0.1,
        stages=(mv2(c1, 1, stride=1), mv2(c2, 3),
                *(vit(c, depth, d) for c, depth, d in zip(c345, (2, 4, 3), row.attn_dims))))


def v2_family(block: BlockConfig, width: float) -> ModelConfig:
    ch = lambda c: make_divisible(c * width, 8)  # noqa: E731
    d = [ch(c) for c in (128, 192, 256)]
    return ModelConfig(
        stem=make_divisible(min(max(32 * width, 16), 64), 8, min_value=16), block=block, expand=2,
        stages=(mv2(make_divisible(64 * width, 16), 1, stride=1), mv2(ch(128), 2),
                *(vit(ch(c), depth, di, ffn=int(2 * di // 16 * 16))
                  for c, depth, di in zip((256, 384, 512), (2, 4, 3), d))))


V1_ROWS = {
    "mobilevit_xxs": V1Row(V1, expand=2, dropout=0.05, channels=(16, 24, 48, 64, 80), attn_dims=(64, 80, 96)),
    "mobilevit_xs": V1Row(V1, expand=4, dropout=0.1, channels=(32, 48, 64, 80, 96), attn_dims=(96, 120, 144)),
    "mobilevit_s": V1Row(V1, expand=4, dropout=0.1, channels=(32, 64, 96, 128, 160), attn_dims=(144, 192, 240)),
    "mobilevitv3_xxs": V1Row(V3_ON_V1, expand=2, dropout=0.05, channels=(16, 24, 64, 80, 128),
                             attn_dims=(64, 80, 96)),
    "mobilevitv3_xs": V1Row(V3_ON_V1, expand=4, dropout=0.1, channels=(32, 48, 96, 160, 160),
                            attn_dims=(96, 120, 144)),
    "mobilevitv3_s": V1Row(V3_ON_V1, expand=4, dropout=0.1, channels=(32, 64, 128, 256, 320),
                           attn_dims=(144, 192, 240)),
}
CONFIGS: dict[str, ModelConfig] = {name: v1_family(row) for name, row in V1_ROWS.items()}
# L2: layer4's MobileViTv3 block with 2 transformer layers instead of 4 (the official `*_v3_fast` modes).
for _name in ("mobilevitv3_xxs", "mobilevitv3_xs", "mobilevitv3_s"):
    _c = CONFIGS[_name]
    CONFIGS[f"{_name}_l2"] = replace(_c, stages=(*_c.stages[:3], replace(_c.stages[3], depth=2), _c.stages[4]))
WIDTHS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
for _w in WIDTHS:
    CONFIGS[f"mobilevitv2_{round(_w * 100):03d}"] = v2_family(V2, _w)
    CONFIGS[f"mobilevitv3_{round(_w * 100):03d}"] = v2_family(V3_ON_V2, _w)

# The block ablation of the paper: MobileViTv1-S with the four v3 changes applied one after another.
ABLATION: dict[str, ModelConfig] = {}
_steps = (("mobilevit_s (baseline)", {}), ("+ 1x1 fusion conv", {"fusion_kernel": 1}),
          ("+ fuse local instead of input", {"fuse": "local"}), ("+ input residual", {"residual": True}),
          ("+ depthwise local conv", {"local_dw": True}))
_block = V1
for _label, _change in _steps:
    _block = replace(_block, **_change)
    ABLATION[_label] = replace(CONFIGS["mobilevit_s"], block=_block)

# Reported figures: (parameters in millions, MACs in millions at 256x256) from the official README / papers.
PAPER: dict[str, tuple[float, float]] = {
    "mobilevit_xxs": (1.3, 400), "mobilevit_xs": (2.3, 1000), "mobilevit_s": (5.6, 2000),
    "mobilevitv3_xxs": (1.2, 289), "mobilevitv3_xs": (2.5, 927), "mobilevitv3_s": (5.8, 1841),
    "mobilevitv3_xxs_l2": (1.1, 256), "mobilevitv3_xs_l2": (2.3, 853), "mobilevitv3_s_l2": (5.2, 1651),
    "mobilevitv3_050": (1.4, 481), "mobilevitv3_075": (3.0, 1064), "mobilevitv3_100": (5.1, 1876),
}
