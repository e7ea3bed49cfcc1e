"""COCO 2017 detection in its published layout, read through pycocotools (torchvision's `CocoDetection`).

`--data` is the folder holding `annotations/instances_{train,val}2017.json` and `{train,val}2017/`. Category ids
(1..90 with gaps) map to contiguous labels 1..80 in sorted id order; 0 is background. The annotations are checked
once, up front:
* an image listed in the json whose file is missing: an error naming it (a partial download must not train on a
  silently smaller set);
* crowd regions: not training targets (COCOeval handles them from the ground-truth json);
* boxes partly outside the image are clipped to it (v2 family; `clip=False`: kept as annotated, as v1); boxes
  with an empty side after that are skipped and counted, as the official loaders do;
* training uses the images with at least one annotation, as the official loaders (pycocotools' `imgToAnns`):
  crowd-only ones train with zero boxes (all priors background); evaluation keeps every image (their false
  positives count in COCO mAP).
"""
from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torchvision import tv_tensors
from torchvision.datasets import CocoDetection
from torchvision.transforms.v2 import functional as F

from .images import try_read_rgb
from .masks import DatasetError

log = logging.getLogger(__name__)
# (image uint8, {"boxes": BoundingBoxes, "labels"}, (h, w) or None) -> (float image, target)
BoxTransform = Callable[[tv_tensors.Image, dict, "tuple[int, int] | None"], tuple]


def coco_root(data: str | Path) -> Path:
    root = Path(data)
    for cand in (root, root / "coco", root / "COCO"):
        if (cand / "annotations").is_dir():
            return cand
    raise DatasetError(f"{root}: not a COCO 2017 folder (expected annotations/instances_val2017.json, val2017/)")


class CocoBoxes(CocoDetection):
    """Samples `(image, {"boxes" xyxy pixels, "labels" 1..80, "image_id", "orig_size" (h, w)})`; `None` for an
    image file that cannot be decoded. Index with an int or the training sampler's `(index, height, width)`."""

    def __init__(self, data: str | Path, split: str, *, transform: BoxTransform | None = None,
                 train: bool = False, clip: bool = True) -> None:
        root = coco_root(data)
        ann_file, image_dir = root / "annotations" / f"instances_{split}2017.json", root / f"{split}2017"
        for path in (ann_file, image_dir):
            if not path.exists():
                raise DatasetError(f"{path}: not found (COCO 2017 layout)")
        with contextlib.redirect_stdout(io.StringIO()):   # pycocotools prints progress on stdout (our JSON)
            try:
                super().__init__(str(image_dir), str(ann_file))
            except (ValueError, KeyError, TypeError) as e:
                raise DatasetError(f"{ann_file}: not a COCO instances file ({e})") from None
        self.box_transform, self.ann_file, self.clip = transform, ann_file, clip
        self.category_ids = sorted(self.coco.getCatIds())
        self.label_of = {cid: i + 1 for i, cid in enumerate(self.category_ids)}
        self.class_names = ["background"] + [self.coco.cats[c]["name"] for c in self.category_ids]
        missing = [self.coco.imgs[i]["file_name"] for i in self.ids
                   if not (image_dir / self.coco.imgs[i]["file_name"]).is_file()]
        if missing:
            raise DatasetError(f"{ann_file}: {len(missing)} listed image file(s) missing from {image_dir}, e.g. "
                               f"{image_dir / missing[0]}")
        self.targets: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.skipped = {"crowd_boxes": 0, "degenerate_boxes": 0, "clipped_boxes": 0, "images_without_boxes": 0}
        kept = []
        for img_id in self.ids:
            self.targets[img_id] = self._clean(img_id)
            # official training set: the images with any annotation (crowd-only ones train with zero boxes)
            if train and not self.coco.imgToAnns.get(img_id):
                self.skipped["images_without_boxes"] += 1
            else:
                kept.append(img_id)
        self.ids = kept
        if any(self.skipped.values()):
            log.info("COCO %s: %d images; %s", split, len(self.ids),
                     ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in self.skipped.items() if v))
        if not self.ids:
            raise DatasetError(f"{ann_file}: no usable images")

    def _clean(self, img_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        info = self.coco.imgs[img_id]
        W, H = info["width"], info["height"]
        boxes, labels = [], []
        for ann in self.coco.imgToAnns.get(img_id, []):
            if ann.get("iscrowd", 0):
                self.skipped["crowd_boxes"] += 1
                continue
            if ann.get("category_id") not in self.label_of:
                raise DatasetError(f"{self.ann_file}: annotation {ann.get('id')} of {info['file_name']} has "
                                   f"category_id {ann.get('category_id')!r}, not in the file's categories")
            bbox = ann.get("bbox")
            if not (isinstance(bbox, list) and len(bbox) == 4):
                raise DatasetError(f"{self.ann_file}: annotation {ann.get('id')} has bbox {bbox!r}, "
                                   "expected [x, y, width, height]")
            x, y, w, h = (float(v) for v in bbox)
            x1, y1, x2, y2 = x, y, x + w, y + h
            if self.clip:   # v2; the v1 loader keeps boxes as annotated
                x1, y1, x2, y2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(W)), min(y2, float(H))
            if x2 <= x1 or y2 <= y1:   # the official rule: only empty boxes go
                self.skipped["degenerate_boxes"] += 1
                continue
            self.skipped["clipped_boxes"] += (x1, y1, x2, y2) != (x, y, x + w, y + h)
            boxes.append([x1, y1, x2, y2])
            labels.append(self.label_of[ann["category_id"]])
        return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(labels, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, key: int | tuple[int, int, int]):
        index, size = (key[0], tuple(key[1:])) if isinstance(key, tuple) else (key, None)
        img_id = self.ids[index]
        info = self.coco.imgs[img_id]
        rgb = try_read_rgb(Path(self.root) / info["file_name"])    # the one reader (EXIF applied, as cv2.imread)
        if rgb is None:
            return None
        image = tv_tensors.Image(F.pil_to_tensor(rgb))
        H, W = image.shape[-2:]
        if (H, W) != (info["height"], info["width"]):
            raise DatasetError(f"{self.root}/{info['file_name']}: image is {W}x{H} (EXIF orientation applied) but "
                               f"{self.ann_file.name} says {info['width']}x{info['height']}")
        boxes, labels = self.targets[img_id]
        target = {"boxes": tv_tensors.BoundingBoxes(boxes.clone(), format="XYXY", canvas_size=(H, W)),
                  "labels": labels.clone()}
        if self.box_transform is not None:
            image, target = self.box_transform(image, target, size)
        target = {"boxes": target["boxes"].as_subclass(torch.Tensor), "labels": target["labels"],
                  "image_id": img_id, "orig_size": (H, W)}
        return image, target
