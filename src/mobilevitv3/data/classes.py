"""Class names of the dense-task data sets, indexed by model label (shipped as small text files beside this one).

VOC: 21 (0 = background). ADE20K: 150, the first name of each class of the SceneParsing `objectInfo150` list
(label 0 = its class 1, "wall"). COCO: 81, 0 = background, then the 80 categories in id order; `coco_category_ids`
gives the original (1..90, gapped) ids that COCO result files use.
"""
from __future__ import annotations

from functools import cache
from importlib import resources

from .scenes import SCENE_CLASSES


@cache
def _lines(name: str) -> tuple[str, ...]:
    text = (resources.files(__package__) / f"{name}_classes.txt").read_text()
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def coco_category_ids() -> list[int]:
    return [int(line.split(maxsplit=1)[0]) for line in _lines("coco")]


def class_names(dataset: str) -> list[str]:
    if dataset == "coco":
        return ["background"] + [line.split(maxsplit=1)[1] for line in _lines("coco")]
    if dataset in ("voc", "ade20k"):
        return list(_lines(dataset))
    if dataset == "scenes":
        return list(SCENE_CLASSES)
    raise KeyError(dataset)
