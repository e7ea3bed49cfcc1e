"""Names -> models. `architecture.tag`: the tag picks the settings of one official release checkpoint
(class count, output stride, head settings, preprocessing).

Architectures: every `CONFIGS` row as a classifier, and `deeplabv3_<backbone>`, `pspnet_<backbone>`,
`ssdlite_<backbone>` for every row.
"""
from __future__ import annotations

import difflib
import fnmatch
import inspect
import logging
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from torch import nn

from ..convert import to_ours
from ..checkpoint import CheckpointError, load_state_dict_strict, read_state_dict
from .backbone import MobileViT
from .config import CONFIGS
from .detection import SSDConfig, SSDLite
from .segmentation import SegHeadConfig, SegmentationModel

log = logging.getLogger(__name__)
TASKS = {"deeplabv3": "segmentation", "pspnet": "segmentation", "ssdlite": "detection"}


@dataclass(frozen=True)
class Preprocess:
    """How the official pipeline fed images: [0, 1] scaling, no mean/std."""
    channel_order: Literal["rgb", "bgr"] = "rgb"
    resize: int | tuple[int, int] = 288     # int: shorter side; (h, w): exact size
    crop: int | None = 256                  # centre crop after the resize (None: none)
    interpolation: Literal["bilinear", "bicubic"] = "bicubic"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class Tag:
    num_classes: int
    preprocess: Preprocess
    dataset: str
    output_stride: int = 32
    model_kwargs: dict[str, Any] = field(default_factory=dict)


def family(backbone: str) -> str:
    return CONFIGS[backbone].block.family


def tag_for(arch: str, tag: str) -> Tag:
    task, backbone = split_arch(arch)
    v1 = family(backbone) == "v1"
    # v1-based releases read images with OpenCV (BGR) and resize bilinearly; v2-based ones are RGB, bicubic.
    pre = Preprocess("bgr" if v1 else "rgb", interpolation="bilinear" if v1 else "bicubic")
    if task == "classification" and tag == "in1k":
        return Tag(1000, pre, "imagenet")
    if task == "segmentation" and tag in ("voc", "ade20k"):
        ade = tag == "ade20k"
        head = SegHeadConfig(arch.split("_")[0], rates=(12, 24, 36) if ade else (6, 12, 18),
                             channels=256 if v1 else 512, aux_head=not v1, align_corners=not v1)
        return Tag(150 if ade else 21, replace(pre, resize=(512, 512), crop=None), tag,
                   output_stride=8 if ade else 16, model_kwargs={"head": head})
    if task == "detection" and tag == "coco":
        ssd = SSDConfig() if v1 else SSDConfig(score_threshold=0.01, pre_nms_top_k=400, per_image_limit=True)
        return Tag(81, replace(pre, resize=(320, 320), crop=None), "coco", model_kwargs={"cfg": ssd})
    raise KeyError(tag)


TAGS = {"classification": ("in1k",), "segmentation": ("voc", "ade20k"), "detection": ("coco",)}


def split_arch(arch: str) -> tuple[str, str]:
    """'deeplabv3_mobilevitv3_xxs' -> ('segmentation', 'mobilevitv3_xxs'); a classifier -> ('classification', arch)."""
    prefix, _, rest = arch.partition("_")
    if prefix in TASKS and rest in CONFIGS:
        return TASKS[prefix], rest
    if arch in CONFIGS:
        return "classification", arch
    raise KeyError(arch)


def list_models(pattern: str = "*", *, tags: bool = False, task: str | None = None) -> list[str]:
    """Architecture names (or `architecture.tag` names with `tags=True`) matching a shell-style pattern."""
    archs = list(CONFIGS) + [f"{p}_{b}" for p in TASKS for b in CONFIGS]
    names = [f"{a}.{t}" for a in archs for t in TAGS[split_arch(a)[0]]] if tags else archs
    return [n for n in names if fnmatch.fnmatch(n, pattern) and (task is None or split_arch(n.split(".")[0])[0] == task)]


def _unknown(kind: str, value: str, choices: list[str]) -> ValueError:
    close = difflib.get_close_matches(value, choices, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; see `mobilevitv3 list`"
    return ValueError(f"unknown {kind} {value!r}{hint}")


def get_tag(name: str) -> Tag | None:
    arch, _, tag = name.partition(".")
    return tag_for(arch, tag) if tag else None


def _check_kwargs(fn, kwargs: dict, name: str) -> None:
    allowed = [p for p in inspect.signature(fn).parameters if p not in ("self", "cfg")]
    for key in kwargs:
        if key not in allowed:
            raise _unknown(f"keyword argument for {name}", key, allowed)


def create_model(name: str, *, num_classes: int | None = None, weights: str | None = None,
                 **kwargs: Any) -> nn.Module:
    """Build `architecture` or `architecture.tag`; optionally load weights (official, timm or ours).

    Keyword arguments go to the backbone (`output_stride`, `dropout`, `in_chans`, ...). A `num_classes` that
    differs from the checkpoint's replaces the classifier (fine-tuning); every other tensor must fit exactly.
    """
    arch, _, tag_name = name.partition(".")
    try:
        task, backbone_name = split_arch(arch)
    except KeyError:
        raise _unknown("model", arch, list_models()) from None
    try:
        tag = tag_for(arch, tag_name) if tag_name else None
    except KeyError:
        raise _unknown(f"tag for {arch}", tag_name, list(TAGS[task])) from None
    head_kwargs = dict(tag.model_kwargs) if tag else {}
    for key in ("head", "cfg"):
        if key in kwargs:
            head_kwargs[key] = kwargs.pop(key)
    _check_kwargs(MobileViT.__init__, kwargs, arch)
    classes = num_classes if num_classes is not None else (
        tag.num_classes if tag else {"classification": 1000, "segmentation": 21, "detection": 81}[task])
    cfg = CONFIGS[backbone_name]
    if task == "classification":
        model = MobileViT(cfg, num_classes=classes, **kwargs)
    else:
        kwargs.setdefault("output_stride", tag.output_stride if tag else (16 if task == "segmentation" else 32))
        backbone = MobileViT(cfg, features_only=True, **kwargs)
        if task == "segmentation":
            model = SegmentationModel(backbone, classes, head_kwargs.get("head", SegHeadConfig(arch.split("_")[0])))
        else:
            model = SSDLite(backbone, classes, head_kwargs.get("cfg", SSDConfig()))
    model.name, model.task, model.tag = name, task, tag
    if weights is not None:
        state = to_ours(read_state_dict(weights))
        own, prefixes = model.state_dict(), model.classifier_prefixes
        # Fine-tuning: an explicit new class count replaces the classifier instead of failing on its shape.
        reset = num_classes is not None and any(
            k.startswith(prefixes) and k in own and v.shape != own[k].shape for k, v in state.items())
        load_state_dict_strict(model, state, name=name, skip_prefixes=prefixes if reset else ())
        log.info("loaded %s into %s%s", weights, name, " (classifier reset to %d classes)" % classes if reset else "")
    return model

__all__ = ["CheckpointError", "Preprocess", "Tag", "create_model", "get_tag", "list_models", "split_arch"]
