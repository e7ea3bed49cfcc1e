"""Names -> models: `list_models`, `create_model` (build, set the identity, load weights), `model_from_identity`
(the one rebuild of a model from a stored identity record: checkpoints, converted files, export metadata) and
`load_model` (a model from one of our self-describing checkpoints alone, read once).

Weights rule: a file that fits the whole model loads into it (all-or-nothing). For a segmenter or detector, a
classifier's file (official, timm or ours; any class count) initialises the backbone only: its classifier and
final conv are dropped, said in one log line. The class count comes from `num_classes`, else from the file (our
identity, or the classifier's shape), else from the tag.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import inspect
import logging
import os
import re
from typing import Any, Literal

from torch import nn

from ..errors import UserError
from ..weights import CheckpointError, Weights, load_state_dict_strict, read_weights
from ..weights.convert import to_ours
from .backbone import MobileViT, MobileViTFeatures
from .config import CONFIGS
from .detection import SSDConfig, SSDLite
from .identity import ModelIdentity
from .init import init_weights
from .segmentation import SegHeadConfig, SegmentationModel
from .tags import DEFAULT_CLASSES, TAGS, TASKS, get_tag, head_settings, split_arch, tag_for, unknown

log = logging.getLogger(__name__)
HEAD_TYPES = {"head": SegHeadConfig, "cfg": SSDConfig}


def list_models(pattern: str = "*", *, tags: bool = False, task: str | None = None) -> list[str]:
    """Architecture names (or `architecture.tag` names with `tags=True`) matching a shell-style pattern."""
    archs = list(CONFIGS) + [f"{p}_{b}" for p in TASKS for b in CONFIGS]
    names = [f"{a}.{t}" for a in archs for t in TAGS[split_arch(a)[0]]] if tags else archs
    return [n for n in names
            if fnmatch.fnmatch(n, pattern) and (task is None or split_arch(n.split(".")[0])[0] == task)]


def _check_classes(num_classes: Any, task: str) -> None:
    if num_classes is None:
        return
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        raise UserError(f"num_classes must be an integer, got {num_classes!r}")
    low = 2 if task != "classification" else 0     # dense tasks count the background class; 0: no classifier
    if num_classes < low:
        raise UserError(f"num_classes must be >= {low} for {task}, got {num_classes}")


def _head_kwargs(task: str, arch: str, tag: str | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    given = {k: kwargs.pop(k) for k in list(kwargs) if k in HEAD_TYPES}
    if task == "classification":
        if given:
            raise UserError(f"{', '.join(given)}: head settings are for segmentation/detection models, not {arch}")
        return {}
    key = "head" if task == "segmentation" else "cfg"
    if (bad := [k for k in given if k != key]):
        raise UserError(f"{arch} takes `{key}=` for its head, not {', '.join(bad)}")
    default = head_settings(arch, tag)[key]
    value = given.get(key, default)
    if isinstance(value, dict):     # a recipe's mapping: the fields it names override the default head's
        fields = [f.name for f in dataclasses.fields(default)]
        for name in value:
            if name not in fields:
                raise unknown(f"{key} setting of {arch}", name, fields)
        value = dataclasses.replace(default, **{k: _tuples(v) for k, v in value.items()})
    return {key: value}


def _tuples(value: Any) -> Any:
    """YAML/JSON lists -> the tuples of the frozen head configs (nested for SSD aspect ratios)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _head_record(arch: str, tag: str | None, head: dict[str, Any]) -> dict[str, Any]:
    """The head settings that differ from the default, as plain data (checkpoints rebuild the model from it)."""
    out = {}
    for key, value in head.items():
        default = head_settings(arch, tag)[key]
        changed = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                   if getattr(value, f.name) != getattr(default, f.name)}
        if changed:
            out[key] = changed
    return out


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise UserError(f"a model name must be a string such as 'mobilevitv3_xxs' or 'mobilevitv3_xxs.in1k', "
                        f"got {name!r}")
    return name


def _check_copy(copy: Any) -> None:
    if copy not in (None, "model", "ema"):
        raise UserError(f"copy must be 'model' (the raw weights) or 'ema', got {copy!r}")


def _check_backbone_kwargs(kwargs: dict[str, Any]) -> None:
    chans = kwargs.get("in_chans")
    if chans is not None and (isinstance(chans, bool) or not isinstance(chans, int) or chans < 1):
        raise UserError(f"in_chans must be a positive integer (3 for RGB images), got {chans!r}")


def build(name: str, num_classes: int | None = None, **kwargs: Any) -> nn.Module:
    """The model of `architecture[.tag]` with its identity set, initialised as the official trainer of its family
    does (`init.py`)."""
    arch, _, tag_name = _check_name(name).partition(".")
    task, backbone_name = split_arch(arch)
    tag = tag_for(arch, tag_name) if tag_name else None
    _check_classes(num_classes, task)
    head = _head_kwargs(task, arch, tag_name or None, kwargs)
    allowed = [p for p in inspect.signature(MobileViT.__init__).parameters
               if p not in ("self", "cfg", "num_classes", "features_only")]
    features = task == "classification" and kwargs.pop("features_only", False)
    if features or "out_indices" in kwargs:     # timm's features_only: the headless backbone, maps at out_indices
        if not features:
            raise UserError("out_indices is for features_only=True (a classifier architecture's backbone)")
        allowed.append("out_indices")
    for key in kwargs:
        if key not in allowed:
            raise unknown(f"keyword argument for {arch}", key, allowed + list(head))
    _check_backbone_kwargs(kwargs)
    classes = num_classes if num_classes is not None else tag.num_classes if tag else DEFAULT_CLASSES[task]
    classes = 0 if features else classes
    cfg = CONFIGS[backbone_name]
    if features:
        model = MobileViTFeatures(cfg, **kwargs)
    elif task == "classification":
        model = MobileViT(cfg, num_classes=classes, **kwargs)
    else:
        kwargs.setdefault("output_stride", tag.output_stride if tag else (16 if task == "segmentation" else 32))
        backbone = MobileViTFeatures(cfg, **kwargs)
        model = (SegmentationModel(backbone, classes, head["head"]) if task == "segmentation"
                 else SSDLite(backbone, classes, head["cfg"]))
    record = {k: v for k, v in kwargs.items() if isinstance(v, (int, float, str, bool))} | \
        _head_record(arch, tag_name or None, head) | \
        ({"features_only": True, "out_indices": list(model.out_indices)} if features else {})
    pre = tag.preprocess if tag else model.identity.preprocess
    if kwargs.get("flip_channels"):     # the model reverses the channels itself: it takes the other order
        pre = dataclasses.replace(pre, channel_order="rgb" if pre.channel_order == "bgr" else "bgr")
    model.identity = ModelIdentity(arch, task, cfg.block.family, classes, pre, tag_name or None,
                                   tag.dataset if tag else None, build=record,
                                   preprocess_from="tag" if tag else "family")
    return init_weights(model, cfg.block.family)   # the official trainers' initialisation (weights overwrite it)


def create_model(name: str, *, num_classes: int | None = None, weights: str | os.PathLike | Weights | None = None,
                 copy: Literal["model", "ema"] | None = None, **kwargs: Any) -> nn.Module:
    """Build `architecture` or `architecture.tag`; optionally load weights (official, timm or ours; see the module
    docstring for the rule). `weights`: a file, or a `Weights` already read from one (it is not read again).
    Keyword arguments go to the backbone (`output_stride`, `dropout`, `in_chans`, ...) or the head (`head=` for
    segmentation, `cfg=` for detection); an unknown one is an error naming close matches."""
    _check_copy(copy)
    if weights is None:
        return build(name, num_classes, **kwargs)
    get_tag(_check_name(name))          # a bad name or class count is reported before any file is read
    arch = name.partition(".")[0]
    task = split_arch(arch)[0]
    _check_classes(num_classes, task)
    file = weights if isinstance(weights, Weights) else read_weights(weights, copy=copy)
    state = to_ours(file.state)
    if kwargs.get("features_only"):     # a headless backbone takes a classifier's file minus its head
        model = build(name, num_classes, **kwargs)
        keep = set(model.state_dict())
        load_state_dict_strict(model, {k: v for k, v in state.items() if k in keep or not k.startswith(
            ("fc.", "final_conv.", "stages."))}, name=name)
        return model
    transfer = task != "classification" and not any(k.startswith("backbone.") for k in state)
    found = None if num_classes is not None or transfer else \
        _classes_in(file, state, task, kwargs.get("cfg") or head_settings(arch, None).get("cfg"))
    model = build(name, num_classes if found is None else found, **kwargs)
    if transfer:
        _load_backbone(model, state, file)
        return model
    own, prefixes = model.state_dict(), model.classifier_prefixes
    # Fine-tuning: an explicit new class count replaces the classifier instead of failing on its shape.
    reset = num_classes is not None and any(
        k.startswith(prefixes) and k in own and v.shape != own[k].shape for k, v in state.items())
    load_state_dict_strict(model, state, name=name, skip_prefixes=prefixes if reset else ())
    names = (file.identity or {}).get("class_names")
    if names and not reset and len(names) == model.num_classes:
        model.identity = model.identity.with_classes(model.num_classes, names)
    log.info("loaded %s weights from %s into %s%s", file.copy if file.copy != "weights" else "the", file.path,
             name, f" (classifier reset to {model.num_classes} classes)" if reset else "")
    return model


def _classes_in(file: Weights, state: dict, task: str, ssd: SSDConfig | dict | None) -> int | None:
    """The class count a file was trained for: our identity, else the classifier's shape."""
    if file.identity and file.identity.get("task") == task:
        return int(file.identity["num_classes"])
    if task == "classification" and "fc.weight" in state:
        return int(state["fc.weight"].shape[0])
    if task == "segmentation" and "head.classifier.conv.weight" in state:
        return int(state["head.classifier.conv.weight"].shape[0])
    heads = sorted(int(m[1]) for k in state if (m := re.fullmatch(r"ssd_heads\.(\d+)\.predict\.conv\.weight", k)))
    if task == "detection" and heads:   # each SSD head predicts (4 box + C class) values per anchor
        ratios = (ssd if isinstance(ssd, SSDConfig) else SSDConfig()).aspect_ratios
        anchors = 2 + 2 * len(ratios[heads[-1]]) if heads[-1] < len(ratios) else 0
        out = int(state[f"ssd_heads.{heads[-1]}.predict.conv.weight"].shape[0])
        return out // anchors - 4 if anchors and out % anchors == 0 else None
    return None


def _load_backbone(model: nn.Module, state: dict, file: Weights) -> None:
    """A classifier's weights -> a dense model's backbone (classifier and final conv dropped)."""
    dropped = [k for k in state if k.startswith(("fc.", "final_conv."))]
    body = {k: v for k, v in state.items() if k not in dropped}
    try:
        load_state_dict_strict(model.backbone, body, name=f"the backbone of {model.name}")
    except CheckpointError as e:
        src = (file.identity or {}).get("arch")
        raise CheckpointError(f"{file.path}{f' ({src})' if src else ''} is not a backbone of {model.name}: "
                              f"{str(e).split(': ', 1)[-1]}") from None
    log.info("loaded the backbone of %s from the %s classifier %s (its %d classifier/final-conv tensors dropped)",
             model.name, file.copy if file.copy != "weights" else "", file.path, len(dropped))


def model_from_identity(record: dict[str, Any], *, weights: Weights | None = None,
                        num_classes: int | None = None) -> nn.Module:
    """The one rebuild of a model from its stored identity record (checkpoints, converted files, export
    metadata): the same architecture, tag and build arguments; with `weights`, loaded from them; without, a
    weightless skeleton. The record's preprocessing (sizes included) and, while the class count is the record's,
    its class names come back too."""
    ident = ModelIdentity.from_dict(record)
    classes = ident.num_classes if weights is None and num_classes is None else num_classes
    model = create_model(ident.model_name, num_classes=classes, weights=weights, **ident.build)
    names = ident.class_names if model.num_classes == ident.num_classes else None
    model.identity = dataclasses.replace(model.identity, class_names=names, preprocess=ident.preprocess,
                                         preprocess_from=ident.preprocess_from)
    return model


def described(file: Weights) -> dict[str, Any]:
    """The identity record of one of our files; a file without one is refused in one line."""
    if not file.identity or not file.identity.get("arch"):
        raise CheckpointError(f"{file.path} does not say which model it holds (not written by this project): give "
                              f"the architecture name too, e.g. `NAME --weights {file.path}`")
    return file.identity


def load_model(path: str | os.PathLike, *, copy: Literal["model", "ema"] | None = None,
               num_classes: int | None = None) -> nn.Module:
    """A model from one of our self-describing files alone (train's last.pt/best.pt, convert's .safetensors),
    read once."""
    if not isinstance(path, (str, os.PathLike)):
        raise UserError(f"load_model takes the path of one of our checkpoints, got {path!r}")
    _check_copy(copy)
    file = read_weights(path, copy=copy)
    return model_from_identity(described(file), weights=file, num_classes=num_classes)


def identity_record(model: nn.Module) -> dict[str, Any]:
    """What our files store about a model: its identity, with the plain keyword arguments it was built with."""
    return model.identity.to_dict()
