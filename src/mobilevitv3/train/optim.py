"""Optimiser, weight-decay groups and the official learning-rate schedule.

Schedule (both official code bases): linear warm-up per optimiser step from `warmup_init_lr` to `lr` over
`warmup_iterations`, then cosine *per epoch*, `min + (max - min) * (1 + cos(pi * epoch / epochs)) / 2`, constant
within an epoch. Each parameter group may carry `lr_multiplier` (a segmentation head trains at 10x).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .config import TrainConfig


def param_groups(model: nn.Module, cfg: TrainConfig, *, is_head: Callable[[str], bool] = lambda name: False
                 ) -> list[dict]:
    """Weight-decay groups of a model, backbone first, then the head parameters (`is_head`) at
    `head_lr_multiplier` x. With `no_decay_bn_filter_bias`, every 1-D parameter (biases, BatchNorm/GroupNorm/
    LayerNorm weights) gets no decay, as the official code decides by `ndim`."""
    groups = []
    for head in (False, True):
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            if p.requires_grad and is_head(name) == head:
                (no_decay if cfg.no_decay_bn_filter_bias and p.ndim <= 1 else decay).append(p)
        mult = cfg.head_lr_multiplier if head else 1.0
        groups += [{"params": decay, "weight_decay": cfg.weight_decay, "lr_multiplier": mult},
                   {"params": no_decay, "weight_decay": 0.0, "lr_multiplier": mult}]
    return [g for g in groups if g["params"]]


def build_optimizer(groups: list[dict], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay)


class LRSchedule:
    """lr(iteration, epoch) of the official recipes. `iteration` counts optimiser steps since the start."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg

    def __call__(self, iteration: int, epoch: int) -> float:
        c = self.cfg
        if c.warmup_iterations > 0 and iteration < c.warmup_iterations:
            lr = c.warmup_init_lr + iteration * (c.lr - c.warmup_init_lr) / c.warmup_iterations
        elif c.scheduler == "fixed":
            lr = c.lr
        else:
            lr = c.min_lr + 0.5 * (c.lr - c.min_lr) * (1 + math.cos(math.pi * epoch / c.epochs))
        return round(lr, 8)   # the official schedulers round to 8 decimals

    def apply(self, optimizer: torch.optim.Optimizer, iteration: int, epoch: int) -> float:
        lr = self(iteration, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_multiplier", 1.0)
        return lr
