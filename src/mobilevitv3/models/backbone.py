"""The MobileViT backbone/classifier for all three families, built from a `ModelConfig` row.

stem (3x3 s2) -> 5 stages (inverted residuals; stages 3-5: one strided inverted residual + one MobileViT block)
-> final 1x1 conv (v1 family) -> global mean pool -> dropout -> linear classifier.
Dense heads take `output_stride` 8 or 16: the strided stages then keep stride 1. The official v2 code dilates the
MobileViT block's local conv (and a later stage's inverted residual); the official v1 code never dilates anything.
The memory layout is the caller's: a channels-last model and input (`model.to(memory_format=torch.channels_last)`)
stay channels-last through every layer, which is what oneDNN is fast in on CPU (see `mobilevitv3.optimize`).
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..layers import ConvNormAct, InvertedResidual, MobileViTBlock
from ..errors import UserError
from .config import ModelConfig
from .identity import Identified, Identity, family_preprocess


class MobileViT(Identified, nn.Module):
    classifier_prefixes = ("fc.",)

    def __init__(self, cfg: ModelConfig, *, num_classes: int = 1000, in_chans: int = 3, output_stride: int = 32,
                 features_only: bool = False, dropout: float | None = None, attn_dropout: float = 0.0,
                 ffn_dropout: float = 0.0, classifier_dropout: float | None = None) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise UserError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        dropout = cfg.dropout if dropout is None else dropout
        cfg = replace(cfg, classifier_dropout=cfg.classifier_dropout if classifier_dropout is None
                      else classifier_dropout)
        self.cfg, self.output_stride, self.grad_checkpointing = cfg, output_stride, False
        self.stem = ConvNormAct(in_chans, cfg.stem, 3, stride=2)
        self.stages = nn.ModuleList()
        self.feature_info: list[dict] = []
        ch, reduction, dilation = cfg.stem, 2, 1
        for i, st in enumerate(cfg.stages):
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
                    attn_dropout=attn_dropout, ffn_dropout=ffn_dropout,
                    dilation=dilation if cfg.block.family == "v2" else 1))
            self.stages.append(nn.Sequential(*blocks))
            ch = st.channels
            self.feature_info.append({"channels": ch, "reduction": reduction, "module": f"stages.{i}"})
        self.features_only = features_only
        self.num_features = ch
        self.num_classes = 0 if features_only else num_classes
        self.identity = Identity(None, "classification", cfg.block.family, self.num_classes,
                                 family_preprocess(cfg.block.family))
        if features_only:
            return
        self.final_conv = ConvNormAct(ch, cfg.head_channels, 1) if cfg.head_channels else nn.Identity()
        self.num_features = cfg.head_channels or ch
        self.head_drop = nn.Dropout(cfg.classifier_dropout)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a freshly initialised one with `num_classes` outputs (0: features only)."""
        self.num_classes, self.identity = num_classes, self.identity.with_classes(num_classes)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage in the backward pass instead of storing its activations (training memory)."""
        self.grad_checkpointing = enable

    def _run_stage(self, stage: nn.Module, x: Tensor) -> Tensor:
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(stage, x, use_reentrant=False)
        return stage(x)

    def forward_intermediates(self, x: Tensor) -> list[Tensor]:
        """One feature map per stage, at the reductions given by `feature_info` (2, 4, 8, 16, 32 by default)."""
        x = self.stem(x)
        out = []
        for stage in self.stages:
            x = self._run_stage(stage, x)
            out.append(x)
        return out

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.forward_intermediates(x)[-1]
        return x if self.features_only else self.final_conv(x)

    def forward_head(self, x: Tensor, *, pre_logits: bool = False) -> Tensor:
        x = self.head_drop(x.mean(dim=(-2, -1)))
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        if self.features_only:
            raise RuntimeError("a features_only backbone has no classifier: use forward_intermediates")
        return self.forward_head(self.forward_features(x))
