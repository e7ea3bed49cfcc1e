"""ADE20K (SceneParsing, `ADEChallengeData2016`) in its published layout: 150 classes.

Masks store 0 = "other" and 1..150 = classes; as the official loader does, targets are `mask - 1`, so "other"
becomes the ignore value -1. `--data` may point at the folder holding `ADEChallengeData2016` or at it.
"""
from __future__ import annotations

from pathlib import Path

from .masks import DatasetError, MaskFormat, MaskPairs, PairTransform

ADE20K = MaskFormat("ADE20K", num_classes=150, stored_ignore=0, label_offset=1)
_SPLITS = {"train": "training", "val": "validation"}


def ade20k_root(data: str | Path) -> Path:
    root = Path(data)
    for cand in (root / "ADEChallengeData2016", root):
        if (cand / "images").is_dir() and (cand / "annotations").is_dir():
            return cand
    raise DatasetError(f"{root}: not an ADE20K folder (expected ADEChallengeData2016/images and /annotations)")


def ade20k_pairs(data: str | Path, split: str) -> list[tuple[Path, Path]]:
    ade = ade20k_root(data)
    images = ade / "images" / _SPLITS[split]
    if not images.is_dir():
        raise DatasetError(f"{images}: split folder not found")
    # every image has its mask under the same stem; a missing one is reported by MaskPairs
    return [(p, ade / "annotations" / _SPLITS[split] / f"{p.stem}.png") for p in sorted(images.glob("*.jpg"))]


def ade20k_segmentation(data: str | Path, split: str, transform: PairTransform | None = None) -> MaskPairs:
    return MaskPairs(ade20k_pairs(data, split), ADE20K, transform=transform, where=f"ADE20K {split}")
