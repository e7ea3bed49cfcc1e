"""The official initialisation of every model part, per family (training.md §1).

v1 family: every conv kaiming normal (fan out, groups not divided out), every linear truncated normal std 0.02,
norms 1/0, biases 0; its DeepLabv3 head the same conv rule. v2 family: the official `initialize_weights` is a
no-op, so PyTorch's defaults stay, except the classifier (xavier uniform, bias 0). SSD extra layers and heads:
xavier uniform convs, bias 0, norms 1/0, in both families. Dense backbones are initialised like classifiers (the
official runs then overwrite them with the ImageNet checkpoint).
"""
from __future__ import annotations

from typing import Literal

from torch import nn

Family = Literal["v1", "v2"]
_NORMS = (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm, nn.SyncBatchNorm)


def _zero_bias(m: nn.Module) -> None:
    if getattr(m, "bias", None) is not None:
        nn.init.zeros_(m.bias)


def _norm(m: nn.Module) -> None:
    if getattr(m, "weight", None) is not None:
        nn.init.ones_(m.weight)
    _zero_bias(m)


def _v1_rule(module: nn.Module) -> None:
    """ml-cvnets `initialize_weights` with the v1 classification settings, over every submodule."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            # torch's fan_out is C_out * k_h * k_w without dividing by groups: what the official rule uses
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            _zero_bias(m)
        elif isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)  # default bounds +-2 (absolute): effectively a plain normal
            _zero_bias(m)
        elif isinstance(m, _NORMS):
            _norm(m)


def _default_rule(module: nn.Module) -> None:
    """PyTorch's own constructor initialisation, re-applied (what the v2 family ends up with)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, *_NORMS)):
            m.reset_parameters()


def _xavier_rule(module: nn.Module) -> None:
    """SSD extra layers and heads: xavier uniform convs with zero bias, norms 1/0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            _zero_bias(m)
        elif isinstance(m, _NORMS):
            _norm(m)


def _classifier(module: nn.Module, family: Family) -> None:
    fc = getattr(module, "fc", None)
    if not isinstance(fc, nn.Linear):
        return
    if family == "v1":
        nn.init.trunc_normal_(fc.weight, std=0.02)
    else:  # the v2 `LinearLayer` initialises itself xavier-uniform in its constructor
        nn.init.xavier_uniform_(fc.weight)
    _zero_bias(fc)


def init_backbone(backbone: nn.Module, family: Family) -> None:
    """A classification model (or features-only backbone) as the official classification constructor leaves it."""
    (_v1_rule if family == "v1" else _default_rule)(backbone)
    _classifier(backbone, family)


def init_weights(model: nn.Module, family: Family) -> nn.Module:
    """Initialise `model` (classifier, segmentation or SSD model of ours) in place as the official trainer of
    `family` does before any checkpoint is loaded; returns the model. Dense models are recognised by their parts
    (`backbone` + `head`/`aux_head`, or `backbone` + `extra_layers`/`ssd_heads`)."""
    if family not in ("v1", "v2"):
        raise ValueError(f"family must be 'v1' or 'v2', got {family!r}")
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        init_backbone(model, family)
        return model
    init_backbone(backbone, family)
    if hasattr(model, "ssd_heads"):
        for part in ("extra_layers", "ssd_heads"):
            _xavier_rule(getattr(model, part))
    else:
        heads = [h for h in (getattr(model, "head", None), getattr(model, "aux_head", None)) if h is not None]
        for head in heads:  # v1: `reset_head_parameters` with the seg YAML (kaiming); v2: a no-op (defaults)
            (_v1_rule if family == "v1" else _default_rule)(head)
    return model
