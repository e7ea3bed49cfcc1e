"""Counting parameters and MACs.

`official_macs` reproduces the official ml-cvnets profiler exactly (the figures the papers and README report):
convs k*k*Cin*Cout*H_out*W_out/groups with H_out = H_in // stride (+ Cout*H_out*W_out for a bias), Linear layers
(in*out + out) per token, and for multi-head attention 2*N*d*d per sequence (not the true 2*N*N*d); norms,
activations, pooling, resizing and the separable attention's products count 0.
`true_macs` counts what actually runs (torch.utils.flop_counter FLOPs / 2).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..layers.attention import MultiHeadAttention


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def official_macs(model: nn.Module, image_size: int | tuple[int, int] = 256) -> int:
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    total = 0

    def conv_hook(m: nn.Conv2d, inp, out) -> None:
        nonlocal total
        ho, wo = inp[0].shape[-2] // m.stride[0], inp[0].shape[-1] // m.stride[1]
        kh, kw = m.kernel_size
        total += kh * kw * m.in_channels * m.out_channels * ho * wo // m.groups * inp[0].shape[0]
        if m.bias is not None:
            total += m.out_channels * ho * wo * inp[0].shape[0]

    def linear_hook(m: nn.Linear, inp, out) -> None:
        nonlocal total
        total += (m.in_features * m.out_features + m.out_features) * (inp[0].numel() // m.in_features)

    def attn_hook(m: MultiHeadAttention, inp, out) -> None:
        nonlocal total
        seqs, n, d = inp[0].shape
        total += 2 * n * d * d * seqs

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
        elif isinstance(m, MultiHeadAttention):
            hooks.append(m.register_forward_hook(attn_hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, h, w))
    finally:
        for hk in hooks:
            hk.remove()
        model.train(was_training)
    return total


def true_macs(model: nn.Module, image_size: int | tuple[int, int] = 256) -> int:
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    attention = 0

    def attn_hook(m: MultiHeadAttention, inp, out) -> None:  # q k^T and attn v: 2 * N^2 * d per sequence
        nonlocal attention
        seqs, n, d = inp[0].shape
        attention += 2 * n * n * d * seqs

    hooks = [m.register_forward_hook(attn_hook) for m in model.modules() if isinstance(m, MultiHeadAttention)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, h, w))
    finally:
        for hk in hooks:
            hk.remove()
        model.train(was_training)
    # FlopCounterMode has no formula for the fused CPU attention kernel; add it unless it was counted.
    counted = any("scaled_dot_product" in str(op) for op in counter.get_flop_counts().get("Global", {}))
    return counter.get_total_flops() // 2 + (0 if counted else attention)
