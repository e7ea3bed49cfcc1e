"""Exponential moving average of a model, with the official semantics and momentum.

After every optimiser step: `ema = (1 - m) * ema + m * model` over the whole state dict, BatchNorm running statistics
included (m = 0.0005 in every official recipe). Integer buffers (`num_batches_tracked`) are copied.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    def __init__(self, model: nn.Module, momentum: float = 0.0005) -> None:
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)
        self.momentum = momentum

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        own = self.module.state_dict()
        for name, value in model.state_dict().items():
            target = own[name]
            if target.is_floating_point():
                target.lerp_(value.detach().to(target.dtype), self.momentum)   # (1 - m) * ema + m * model
            else:
                target.copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
