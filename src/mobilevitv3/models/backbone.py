"""The MobileViT backbone/classifier for all three families, built from a `ModelConfig` row.

stem (3x3 s2) -> 5 stages (inverted residuals; stages 3-5: one strided inverted residual + one MobileViT block)
-> final 1x1 conv (v1 family) -> global mean pool -> dropout -> linear classifier.
Every model honours timm's model contract: `feature_info` (num_chs/reduction/module per stage),
`forward_intermediates(x, indices, norm, stop_early, output_fmt, intermediates_only)`,
`prune_intermediate_layers`, `forward_features`/`forward_head(pre_logits=)`, `reset_classifier(num_classes,
global_pool)`, `num_classes=0`, `global_pool=''`, gradient checkpointing; it scripts and FX-traces.
`MobileViTFeatures` is the headless backbone (`features_only`): its `forward` returns the maps at `out_indices`.
Dense heads take `output_stride` 8 or 16: the strided stages then keep stride 1. The official v2 code dilates the
MobileViT block's local conv (and a later stage's inverted residual); the official v1 code never dilates anything.
The memory layout is the caller's: a channels-last model and input (`model.to(memory_format=torch.channels_last)`)
stay channels-last through every layer, which is what oneDNN is fast in on CPU (see `mobilevitv3.optimize`).
`flip_channels=True` reverses the input's channel order first: an RGB pipeline (timm's) then feeds the v1-based
checkpoints the BGR they were trained on.
"""
# No `from __future__ import annotations` here: an FX graph of the model copies `forward`'s annotations, and
# TorchScript cannot read them as strings.
from dataclasses import replace

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..errors import UserError
from ..layers import ConvNormAct, InvertedResidual, MobileViTBlock
from .config import ModelConfig
from .identity import Identified, ModelIdentity, family_preprocess


def take_indices(count: int, indices: int | list[int] | tuple[int, ...] | None) -> list[int]:
    """timm's index rule: None -> all `count`, an int n -> the last n, a sequence -> those (negative from the end)."""
    if indices is None:
        indices = count
    if isinstance(indices, int):
        if not 0 < indices <= count:
            raise UserError(f"cannot take the last {indices} of {count} feature maps")
        return list(range(count - indices, count))
    out = [i + count if i < 0 else i for i in indices]
    if not out or any(not 0 <= i < count for i in out):
        raise UserError(f"feature indices {list(indices)} out of range for {count} stages")
    return out


def _drop_path_rates(cfg: ModelConfig, rate: float) -> list[tuple[float, ...]]:
    """Per MobileViT block, its transformer layers' stochastic-depth rates: 0 -> `rate` linearly over the net."""
    depths = [st.depth if st.attn_dim else 0 for st in cfg.stages]
    total = sum(depths)
    rates = [rate * i / max(total - 1, 1) for i in range(total)] if rate else [0.0] * total
    out, start = [], 0
    for d in depths:
        out.append(tuple(rates[start:start + d]))
        start += d
    return out


class MobileViT(Identified, nn.Module):
    classifier_prefixes = ("fc.",)

    def __init__(self, cfg: ModelConfig, *, num_classes: int = 1000, in_chans: int = 3, output_stride: int = 32,
                 features_only: bool = False, global_pool: str = "avg", drop_path_rate: float = 0.0,
                 flip_channels: bool = False, dropout: float | None = None, attn_dropout: float = 0.0,
                 ffn_dropout: float = 0.0, classifier_dropout: float | None = None) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise UserError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise UserError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        _check_pool(global_pool, 0 if features_only else num_classes)
        dropout = cfg.dropout if dropout is None else dropout
        cfg = replace(cfg, classifier_dropout=cfg.classifier_dropout if classifier_dropout is None
                      else classifier_dropout)
        self.cfg, self.output_stride, self.grad_checkpointing = cfg, output_stride, False
        self.flip_channels, self.in_chans = flip_channels, in_chans
        self.stem = ConvNormAct(in_chans, cfg.stem, 3, stride=2)
        self.stages = nn.ModuleList()
        self.feature_info: list[dict] = []
        ch, reduction, dilation = cfg.stem, 2, 1
        for i, (st, drop_path) in enumerate(zip(cfg.stages, _drop_path_rates(cfg, drop_path_rate))):
            stride, prev_dilation = st.stride, dilation
            if reduction * stride > output_stride:  # keep resolution: stride 1 (+ dilation, v2 family only)
                dilation, stride = dilation * stride, 1
            reduction *= stride
            blocks = [InvertedResidual(ch if j == 0 else st.channels, st.channels, stride=stride if j == 0 else 1,
                                       expand=cfg.expand, dilation=prev_dilation)
                      for j in range(1 if st.attn_dim else st.depth)]
            if st.attn_dim:
                blocks.append(MobileViTBlock(
                    st.channels, st.attn_dim, st.ffn_dim, st.depth, cfg.block, heads=cfg.heads, dropout=dropout,
                    attn_dropout=attn_dropout, ffn_dropout=ffn_dropout, drop_path=drop_path,
                    dilation=dilation if cfg.block.family == "v2" else 1))
            self.stages.append(nn.Sequential(*blocks))
            ch = st.channels
            self.feature_info.append({"num_chs": ch, "reduction": reduction, "module": f"stages.{i}"})
        self.features_only = features_only
        self.num_features = self.head_hidden_size = ch
        self.num_classes, self.global_pool = 0 if features_only else num_classes, global_pool
        self.identity = ModelIdentity(None, "classification", cfg.block.family, self.num_classes,
                                      family_preprocess(cfg.block.family))
        if features_only:
            return
        self.final_conv = ConvNormAct(ch, cfg.head_channels, 1) if cfg.head_channels else nn.Identity()
        self.num_features = self.head_hidden_size = cfg.head_channels or ch
        self.head_drop = nn.Dropout(cfg.classifier_dropout)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier by a freshly initialised one with `num_classes` outputs (0: none, `forward` gives
        the pooled features); `global_pool` 'avg' (official), 'max' or '' (no pooling: `forward` gives the map,
        num_classes 0)."""
        if global_pool is None:     # keep the pooling, unless a classifier is asked for on unpooled maps
            global_pool = self.global_pool if self.global_pool or not num_classes else "avg"
        _check_pool(global_pool, num_classes)
        self.global_pool = global_pool
        self.num_classes, self.identity = num_classes, self.identity.with_classes(num_classes)
        p = next(self.parameters())     # the new classifier lives where the model does (device, dtype)
        self.fc = (nn.Linear(self.num_features, num_classes, device=p.device, dtype=p.dtype) if num_classes
                   else nn.Identity()).train(self.training)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage in the backward pass instead of storing its activations (training memory)."""
        self.grad_checkpointing = enable

    def _stages(self, x: Tensor, take: list[int], last: int) -> tuple[Tensor, list[Tensor]]:
        """Run the stem and stages 0..`last`; the outputs of the stages in `take` are collected."""
        x = self.stem(x.flip(1) if self.flip_channels else x)
        out: list[Tensor] = []
        for i, stage in enumerate(self.stages):
            if i <= last:
                if self.grad_checkpointing and self.training and not torch.jit.is_scripting() \
                        and torch.is_grad_enabled():
                    x = checkpoint(stage, x, use_reentrant=False)
                else:
                    x = stage(x)
                if i in take:
                    out.append(x)
        return x, out

    def forward_intermediates(self, x: Tensor, indices: int | list[int] | None = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW", intermediates_only: bool = False,
                              ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """timm's contract: the stage outputs picked by `indices` (None: all 5, at the reductions of `feature_info`;
        an int n: the last n; a list: those), and unless `intermediates_only`, the `forward_features` output too.
        `stop_early` skips the stages after the last one taken (the output is then that stage's map, no final
        conv); `norm` is a no-op (MobileViT has no final norm); only 'NCHW' output."""
        if output_fmt != "NCHW":
            raise UserError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        take = take_indices(len(self.stages), indices)
        last = max(take) if intermediates_only or stop_early else len(self.stages) - 1
        x, out = self._stages(x, take, last)
        if intermediates_only:
            return out
        return (self._final(x) if last == len(self.stages) - 1 else x), out

    def prune_intermediate_layers(self, indices: int | list[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop the stages after the last of `indices` (and with `prune_head` the final conv and classifier): what
        timm's `features_only` wrapper keeps. Returns the indices, absolute."""
        take = take_indices(len(self.stages), indices)
        self.stages = self.stages[:max(take) + 1]
        if prune_head and not self.features_only:
            self.final_conv = nn.Identity()
            self.num_features = self.head_hidden_size = self.feature_info[max(take)]["num_chs"]
            self.reset_classifier(0, "")
        return take

    def _final(self, x: Tensor) -> Tensor:
        return x if self.features_only else self.final_conv(x)

    def forward_features(self, x: Tensor) -> Tensor:
        return self._final(self._stages(x, [], len(self.stages) - 1)[0])

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        if self.global_pool == "avg":
            x = x.mean(dim=(-2, -1))
        elif self.global_pool == "max":
            x = x.amax(dim=(-2, -1))
        x = self.head_drop(x)
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        if self.features_only:
            raise RuntimeError("a features_only backbone has no classifier: use forward_intermediates")
        return self.forward_head(self.forward_features(x))


class MobileViTFeatures(MobileViT):
    """The headless backbone (timm's `features_only`): `forward` returns the maps of the stages in `out_indices`,
    described in that order by `feature_info`; the stages after the last one are not built."""

    def __init__(self, cfg: ModelConfig, *, out_indices: tuple[int, ...] = (0, 1, 2, 3, 4), **kwargs) -> None:
        super().__init__(cfg, features_only=True, **kwargs)
        self.out_indices = take_indices(len(self.stages), list(out_indices))
        self.stages = self.stages[:max(self.out_indices) + 1]
        self.feature_info = [self.feature_info[i] for i in self.out_indices]

    def forward(self, x: Tensor) -> list[Tensor]:  # type: ignore[override]
        return self._stages(x, self.out_indices, len(self.stages) - 1)[1]


def _check_pool(global_pool: str, num_classes: int) -> None:
    if global_pool not in ("avg", "max", ""):
        raise UserError(f"global_pool must be 'avg', 'max' or '' (none), got {global_pool!r}")
    if not global_pool and num_classes:
        raise UserError("global_pool='' (no pooling) needs num_classes=0: the classifier takes pooled features")
