"""Architecture names and release tags. `architecture.tag`: the tag picks the settings of one official release
checkpoint (class count, output stride, head settings, preprocessing); an untagged dense architecture gets its
family's head (the settings of the family's VOC release) and the family's input convention.

Architectures: every `CONFIGS` row as a classifier, and `deeplabv3_<backbone>`, `pspnet_<backbone>`,
`ssdlite_<backbone>` for every row.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from typing import Any

from ..errors import UserError
from .config import CONFIGS
from .detection import SSDConfig
from .identity import Preprocess, family_preprocess
from .segmentation import SegHeadConfig

TASKS = {"deeplabv3": "segmentation", "pspnet": "segmentation", "ssdlite": "detection"}
TAGS = {"classification": ("in1k",), "segmentation": ("voc", "ade20k"), "detection": ("coco",)}
DEFAULT_CLASSES = {"classification": 1000, "segmentation": 21, "detection": 81}


@dataclass(frozen=True)
class Tag:
    num_classes: int
    preprocess: Preprocess
    dataset: str
    output_stride: int = 32


def family(backbone: str) -> str:
    return CONFIGS[backbone].block.family


def split_arch(arch: str) -> tuple[str, str]:
    """'deeplabv3_mobilevitv3_xxs' -> ('segmentation', 'mobilevitv3_xxs'); a classifier -> ('classification', arch).
    An unknown architecture is a UserError naming the close matches."""
    prefix, _, rest = arch.partition("_")
    if prefix in TASKS and rest in CONFIGS:
        return TASKS[prefix], rest
    if arch in CONFIGS:
        return "classification", arch
    raise unknown("model", arch, list(CONFIGS) + [f"{p}_{b}" for p in TASKS for b in CONFIGS])


def unknown(kind: str, value: str, choices: list[str]) -> UserError:
    close = difflib.get_close_matches(value, choices, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see `mobilevitv3 list`"
    return UserError(f"unknown {kind} {value!r}{hint}")


def head_settings(arch: str, tag: str | None) -> dict[str, Any]:
    """The head keyword of a dense architecture (`head` for segmentation, `cfg` for detection) for a release tag,
    or for the family's default when untagged."""
    task, backbone = split_arch(arch)
    v1 = family(backbone) == "v1"
    if task == "segmentation":
        ade = tag == "ade20k"
        return {"head": SegHeadConfig(arch.split("_")[0], rates=(12, 24, 36) if ade else (6, 12, 18),
                                      channels=256 if v1 else 512, aux_head=not v1, align_corners=not v1,
                                      aspp_dropout=0.1 if v1 else 0.0)}
    if task == "detection":
        return {"cfg": SSDConfig() if v1 else SSDConfig(score_threshold=0.01, pre_nms_top_k=400,
                                                        per_image_limit=True)}
    return {}


def tag_for(arch: str, tag: str) -> Tag:
    task, backbone = split_arch(arch)
    if tag not in TAGS[task]:
        raise unknown(f"tag for {arch}", tag, list(TAGS[task]))
    pre = family_preprocess(family(backbone))
    if task == "classification":
        return Tag(1000, pre, "imagenet")
    if task == "segmentation":
        ade = tag == "ade20k"
        return Tag(150 if ade else 21, replace(pre, resize=(512, 512), crop=None), tag,
                   output_stride=8 if ade else 16)
    return Tag(81, replace(pre, resize=(320, 320), crop=None), "coco")


def get_tag(name: str) -> Tag | None:
    """The release settings of `architecture.tag` (None for an untagged name)."""
    arch, _, tag = name.partition(".")
    split_arch(arch)
    return tag_for(arch, tag) if tag else None
