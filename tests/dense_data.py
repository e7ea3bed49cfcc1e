"""Tiny data sets in the real published layouts (PASCAL VOC 2012, ADE20K, COCO 2017), generated in a folder.

Images are flat backgrounds with coloured rectangles; the masks / boxes are those rectangles, so a model can learn
them and a metric has a known answer.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = [(220, 40, 40), (40, 200, 60), (40, 80, 220), (230, 200, 40)]


def _scene(rng: np.random.Generator, h: int, w: int, labels: list[int]) -> tuple[np.ndarray, list, np.ndarray]:
    """An RGB image, its rectangles [(label, x, y, w, h)] and a label map (0 = background)."""
    image = np.full((h, w, 3), 90, np.uint8)
    label_map = np.zeros((h, w), np.uint8)
    rects = []
    for label in labels:
        rw, rh = int(rng.integers(w // 4, w // 2)), int(rng.integers(h // 4, h // 2))
        x, y = int(rng.integers(0, w - rw)), int(rng.integers(0, h - rh))
        image[y:y + rh, x:x + rw] = COLOURS[(label - 1) % len(COLOURS)]
        label_map[y:y + rh, x:x + rw] = label
        rects.append((label, x, y, rw, rh))
    return image, rects, label_map


def make_voc(root: Path, *, n_train: int = 4, n_val: int = 3, size: tuple[int, int] = (60, 80), seed: int = 0,
             boundary: bool = True) -> Path:
    """root/VOCdevkit/VOC2012 with palette masks (classes 1..3, 255 on a one-pixel frame when `boundary`)."""
    rng = np.random.default_rng(seed)
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    palette = [v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)]
    for split, n in (("train", n_train), ("val", n_val)):
        ids = [f"2007_{split}_{i:03d}" for i in range(n)]
        for i in ids:
            image, _, label_map = _scene(rng, *size, [1 + int(rng.integers(0, 3)), 1 + int(rng.integers(0, 3))])
            if boundary:
                label_map[0, :] = 255
            Image.fromarray(image).save(voc / "JPEGImages" / f"{i}.jpg", quality=95)
            mask = Image.fromarray(label_map, mode="P")
            mask.putpalette(palette)
            mask.save(voc / "SegmentationClass" / f"{i}.png")
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


def make_ade20k(root: Path, *, n_train: int = 3, n_val: int = 2, size: tuple[int, int] = (64, 72),
                seed: int = 0) -> Path:
    """root/ADEChallengeData2016 with grayscale masks (0 = other, 1..150 classes)."""
    rng = np.random.default_rng(seed)
    ade = root / "ADEChallengeData2016"
    for split, folder, n in (("train", "training", n_train), ("val", "validation", n_val)):
        (ade / "images" / folder).mkdir(parents=True, exist_ok=True)
        (ade / "annotations" / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image, _, label_map = _scene(rng, *size, [1, 150])
            name = f"ADE_{split}_{i:08d}"
            Image.fromarray(image).save(ade / "images" / folder / f"{name}.jpg", quality=95)
            Image.fromarray(label_map, mode="L").save(ade / "annotations" / folder / f"{name}.png")
    return root


CATEGORIES = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"}]


def make_coco(root: Path, *, n_train: int = 4, n_val: int = 3, size: tuple[int, int] = (96, 128),
              seed: int = 0) -> Path:
    """root/annotations/instances_{train,val}2017.json + root/{train,val}2017/*.jpg, 3 categories (ids 1, 3, 18)."""
    rng = np.random.default_rng(seed)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    ann_id = 1
    for split, n in (("train", n_train), ("val", n_val)):
        (root / f"{split}2017").mkdir(parents=True, exist_ok=True)
        images, anns = [], []
        for i in range(n):
            img_id = 1000 * (split == "val") + i + 1
            labels = [1 + int(rng.integers(0, 3)), 1 + int(rng.integers(0, 3))]
            image, rects, _ = _scene(rng, *size, labels)
            name = f"{img_id:012d}.jpg"
            Image.fromarray(image).save(root / f"{split}2017" / name, quality=95)
            images.append({"id": img_id, "file_name": name, "height": size[0], "width": size[1]})
            for label, x, y, w, h in rects:
                anns.append({"id": ann_id, "image_id": img_id, "category_id": CATEGORIES[label - 1]["id"],
                             "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
                ann_id += 1
        write_coco_json(root / "annotations" / f"instances_{split}2017.json", images, anns)
    return root


def write_coco_json(path: Path, images: list, anns: list, categories: list = CATEGORIES) -> None:
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": categories}))


def read_coco_json(path: Path) -> dict:
    return json.loads(path.read_text())
