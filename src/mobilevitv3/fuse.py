"""Inference-time BatchNorm folding: `fuse(model)` returns a copy in which every BatchNorm2d is folded into the
convolution before it, so the copy runs one op (conv + bias) where the original ran two.

In eval mode BN is the per-channel affine y = (x - mean) * gamma / sqrt(var + eps) + beta, and a conv is linear, so
conv -> BN equals one conv with weight W * s and bias (b - mean) * s + beta, s = gamma / sqrt(var + eps). The
folding is computed in float64 and cast back, keeping outputs within ~1e-6 of the original in float32.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def fuse(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` with each BatchNorm2d folded into the Conv2d that precedes it.

    Pairs are found in `nn.Sequential` containers (every `ConvNormAct` is one), the norm is removed from its
    container. The copy is for inference only (its norms are gone); the original is left untouched. Raises if a
    BatchNorm could not be folded.
    """
    fused = copy.deepcopy(model).eval()
    pairs = []  # collected first: folding edits the containers being walked
    for container in fused.modules():
        if isinstance(container, nn.Sequential):
            names = list(container._modules)
            for first, second in zip(names, names[1:]):
                conv, norm = container._modules[first], container._modules[second]
                if isinstance(conv, nn.Conv2d) and type(norm) is nn.BatchNorm2d:
                    pairs.append((container, conv, second, norm))
    for container, conv, norm_name, norm in pairs:
        fold_batchnorm(conv, norm)
        del container._modules[norm_name]
    left = [name for name, m in fused.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise ValueError(f"cannot fold BatchNorm layers that do not directly follow a conv: {', '.join(left)}")
    return fused


@torch.no_grad()
def fold_batchnorm(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
    """Fold an eval-mode `norm` (running statistics) into `conv` in place; `conv` gains a bias if it had none."""
    if norm.running_mean is None or norm.running_var is None:
        raise ValueError("a BatchNorm without running statistics cannot be folded")
    w = conv.weight.double()
    mean, var = norm.running_mean.double(), norm.running_var.double()
    gamma = norm.weight.double() if norm.weight is not None else torch.ones_like(mean)
    beta = norm.bias.double() if norm.bias is not None else torch.zeros_like(mean)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(mean)
    scale = gamma * torch.rsqrt(var + norm.eps)                             # [C_out]
    conv.weight.copy_((w * scale.reshape(-1, 1, 1, 1)).to(conv.weight.dtype))
    new_bias = ((bias - mean) * scale + beta).to(conv.weight.dtype)
    if conv.bias is None:
        conv.bias = nn.Parameter(new_bias, requires_grad=conv.weight.requires_grad)
    else:
        conv.bias.copy_(new_bias)
