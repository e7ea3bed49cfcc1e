"""Exponential moving average of a model, with the official semantics and momentum.

After every optimiser step: `ema = (1 - m) * ema + m * model` over the whole state dict, BatchNorm running statistics
included (m = 0.0005 in every official recipe), computed as the official code does (`averaging.official_ema_update`:
float32 coefficients; integer buffers such as `num_batches_tracked` averaged in float and truncated).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .averaging import official_ema_update


class ModelEMA:
    def __init__(self, model: nn.Module, momentum: float = 0.0005) -> None:
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)
        self.momentum = momentum

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        # ema * (1 - m) + m * model in each entry's dtype, as official (not a lerp: float32 rounds both coefficients)
        official_ema_update(self.module.state_dict(), model.state_dict(), self.momentum)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
