"""Opt-in registration in timm: `import mobilevitv3.timm` registers every classifier architecture of the zoo in
timm's model registry (importing `mobilevitv3` alone registers nothing), each with its release tag (`.in1k`) and
that tag's complete `pretrained_cfg`: input size, crop_pct, interpolation, mean/std ([0, 1] input: mean 0, std 1),
class count, classifier, first conv, licence of the official weights.

- Names timm already has (its own `mobilevit_*` / `mobilevitv2_*` ports) are registered as `<name>_exact`, so
  timm's entries stay what they are; every `mobilevitv3_*` keeps its name (`NAMES` maps ours -> registered).
- Weights a user holds: `timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=PATH))` reads
  the file with timm's loader, then our converter maps an official release checkpoint (or timm's or our own
  layout) to our keys. No registered tag names a download: nothing is fetched.
- BGR: the v1-based checkpoints were trained on BGR input, timm's transforms give RGB. The v1-family models
  registered here reverse the channel order as their first op (`flip_channels=True`; pass `flip_channels=False`
  for a BGR pipeline), so timm's data config and transforms give the official logits; the cfg's notes say so.
- `features_only=True` uses timm's getter wrapper: `prune_intermediate_layers`, then `forward_intermediates`.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

import timm
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from .hub import OFFICIAL_LICENSE
from .models.backbone import MobileViT
from .models.config import CONFIGS
from .models.registry import build
from .models.tags import family, get_tag
from .weights.convert import to_ours

SUFFIX = "_exact"
ORIGIN = {"mobilevitv3": "https://github.com/micronDLA/MobileViTv3", "mobilevitv2": "https://github.com/apple/ml-cvnets",
          "mobilevit": "https://github.com/apple/ml-cvnets"}
PAPERS = {"mobilevitv3": "arXiv:2209.15159", "mobilevitv2": "arXiv:2206.02680", "mobilevit": "arXiv:2110.02178"}


def _registered_name(arch: str) -> str:
    return arch + SUFFIX if timm.is_model(arch) else arch


NAMES = {arch: _registered_name(arch) for arch in CONFIGS}


def _pretrained_cfg(arch: str) -> dict[str, Any]:
    pre = get_tag(f"{arch}.in1k").preprocess
    crop, resize = pre.crop, pre.resize
    v1 = family(arch) == "v1"
    notes = ("input RGB in [0, 1]: the model reverses it to the BGR the official v1-based weights were trained on "
             "(flip_channels=True)",) if v1 else ("input RGB in [0, 1], no mean/std",)
    return dict(input_size=(3, crop, crop), crop_pct=crop / resize, interpolation=pre.interpolation,
                mean=pre.mean, std=pre.std, num_classes=get_tag(f"{arch}.in1k").num_classes,
                pool_size=(crop // 32, crop // 32), first_conv="stem.conv", classifier="fc", license=OFFICIAL_LICENSE,
                origin_url=ORIGIN[arch.split("_")[0]], paper_ids=PAPERS[arch.split("_")[0]], notes=notes)


default_cfgs = generate_default_cfgs({f"{NAMES[arch]}.in1k": _pretrained_cfg(arch) for arch in CONFIGS})


def _build(arch: str, *, device: Any = None, dtype: Any = None, **kwargs: Any) -> nn.Module:
    """timm's keyword arguments -> ours (`drop_rate` is the classifier dropout); an unknown one is a TypeError,
    as for any timm model."""
    if "drop_rate" in kwargs:
        kwargs["classifier_dropout"] = kwargs.pop("drop_rate")
    known = set(inspect.signature(MobileViT.__init__).parameters) - {"self", "cfg", "features_only"}
    if unknown := sorted(set(kwargs) - known):
        raise TypeError(f"{NAMES[arch]} got unexpected keyword arguments {unknown}")
    kwargs.setdefault("flip_channels", family(arch) == "v1")
    return build(arch, kwargs.pop("num_classes", None), **kwargs).to(device=device, dtype=dtype)


def _checkpoint_filter(state_dict: dict, model: nn.Module) -> dict:
    """Any layout our converter knows (official release, timm's MobileViT ports, ours) -> our keys."""
    return to_ours(state_dict)


def _entrypoint(arch: str) -> Callable[..., nn.Module]:
    def create(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        return build_model_with_cfg(partial(_build, arch), NAMES[arch], pretrained,
                                    pretrained_filter_fn=_checkpoint_filter,
                                    feature_cfg=dict(feature_cls="getter"), **kwargs)
    create.__name__ = create.__qualname__ = NAMES[arch]
    create.__module__ = __name__
    create.__doc__ = f"{arch} (mobilevitv3 package): exact to the official release."
    return create


for _arch in CONFIGS:
    globals()[NAMES[_arch]] = register_model(_entrypoint(_arch))
