"""PASCAL VOC 2012 segmentation in its published layout (21 classes with background; 255 = boundary, ignored).

`--data` may point at the folder holding `VOCdevkit`, at `VOCdevkit`, or at `VOC2012` itself. Training uses the
SBD-augmented set (10,582 images) as the official recipes do when it is installed the usual way (DeepLab's
`SegmentationClassAug/` masks with a `train_aug` list), else the 1,464-image `train` split; validation is `val`.
"""
from __future__ import annotations

import logging
from pathlib import Path

from .coco_voc import coco_voc_pairs
from .masks import DatasetError, MaskFormat, MaskPairs, PairTransform

log = logging.getLogger(__name__)
VOC = MaskFormat("PASCAL VOC", num_classes=21, stored_ignore=255)


def voc_root(data: str | Path) -> Path:
    root = Path(data)
    for cand in (root / "VOCdevkit" / "VOC2012", root / "VOC2012", root):
        if (cand / "JPEGImages").is_dir():
            return cand
    raise DatasetError(f"{root}: not a PASCAL VOC 2012 folder (expected VOCdevkit/VOC2012/JPEGImages and "
                       "SegmentationClass under it)")


def _ids(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def _aug_pairs(voc: Path) -> list[tuple[Path, Path]] | None:
    """SBD-augmented training pairs: `ImageSets/Segmentation/train_aug.txt` (ids) or DeepLab's `list/train_aug.txt`
    (`/JPEGImages/x.jpg /SegmentationClassAug/x.png` per line); None when not installed."""
    if not (voc / "SegmentationClassAug").is_dir():
        return None
    ids_file = voc / "ImageSets" / "Segmentation" / "train_aug.txt"
    if ids_file.is_file():
        return [(voc / "JPEGImages" / f"{i}.jpg", voc / "SegmentationClassAug" / f"{i}.png") for i in _ids(ids_file)]
    pairs_file = voc / "list" / "train_aug.txt"
    if pairs_file.is_file():
        lines = [ln.split() for ln in pairs_file.read_text().splitlines() if ln.strip()]
        if any(len(parts) != 2 for parts in lines):
            raise DatasetError(f"{pairs_file}: expected 'image_path mask_path' on every line")
        return [(voc / a.lstrip("/"), voc / b.lstrip("/")) for a, b in lines]
    return None


def voc_pairs(data: str | Path, split: str) -> list[tuple[Path, Path]]:
    voc = voc_root(data)
    if split == "train" and (aug := _aug_pairs(voc)) is not None:
        log.info("VOC training set: SBD-augmented train_aug (%d images)", len(aug))
        return aug
    ids_file = voc / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not ids_file.is_file():
        raise DatasetError(f"{ids_file}: split list not found")
    return [(voc / "JPEGImages" / f"{i}.jpg", voc / "SegmentationClass" / f"{i}.png") for i in _ids(ids_file)]


def voc_segmentation(data: str | Path, split: str, transform: PairTransform | None = None, *,
                     coco_root: str | Path | None = None, coco_cache: str | Path | None = None) -> MaskPairs:
    """The `train` (train_aug when present) or `val` split as a `MaskPairs` data set. `coco_root` (training only):
    the official `use_coco_data`, COCO train2017 with VOC-class masks appended after the VOC list (`coco_voc`)."""
    pairs = voc_pairs(data, split)
    if coco_root is not None:
        if split != "train":
            raise DatasetError("use_coco_data (coco_root) adds COCO images to the VOC training set only")
        coco = coco_voc_pairs(coco_root, coco_cache)
        log.info("use_coco_data: %d VOC + %d COCO training images", len(pairs), len(coco))
        pairs = pairs + coco
    return MaskPairs(pairs, VOC, transform=transform, where=f"VOC2012 {split}" + (" + COCO" if coco_root else ""))
