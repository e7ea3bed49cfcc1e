"""Inference-time BatchNorm folding: `fuse(model)` returns an eval-mode copy in which every BatchNorm2d that follows
a conv inside an `nn.Sequential` (every `ConvNormAct`) is folded into that conv with
`torch.nn.utils.fusion.fuse_conv_bn_eval`, so the copy runs one op (conv + bias) where the original ran two.
"""
from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fuse(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` with each BatchNorm2d folded into the Conv2d before it; the original is left
    untouched. Raises if a BatchNorm could not be folded (one that does not directly follow a conv)."""
    fused = copy.deepcopy(model).eval()
    pairs = []   # collected first: folding edits the containers being walked
    for container in [m for m in fused.modules() if isinstance(m, nn.Sequential)]:
        names = list(container._modules)
        pairs += [(container, a, b) for a, b in zip(names, names[1:])
                  if type(container._modules[a]) is nn.Conv2d and type(container._modules[b]) is nn.BatchNorm2d]
    for container, first, second in pairs:
        conv, norm = container._modules[first], container._modules[second]
        if norm.running_mean is None:
            raise ValueError(f"BatchNorm {second!r} has no running statistics and cannot be folded")
        container._modules[first] = fuse_conv_bn_eval(conv, norm)
        del container._modules[second]
    left = [name for name, m in fused.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise ValueError(f"cannot fold BatchNorm layers that do not directly follow a conv: {', '.join(left)}")
    return fused
