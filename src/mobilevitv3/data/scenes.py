"""The embedded dense-task data set: scikit-learn's 8x8 handwritten digits printed on solid tiles in textured scenes.

Each scene holds 1-3 tiles (ellipses to rounded rectangles, 3/8 to 3/4 of the scene side: the object sizes of
PASCAL VOC relative to its images) at random places and colours on a noise, gradient or stripe background; each
tile carries one handwritten digit, which is its class. The label mask (0 background, a tile of digit d -> d + 1:
11 classes) is the whole tile and the boxes are the tight boxes of those masks, exact from the paste. Solid objects
of that size are what an output-stride-16 model can draw: a perfect predictor on the 8x8 grid of a 128x128 scene,
upsampled like the dense heads, scores >= 0.9 mIoU (tests/test_scenes.py); digit strokes, 5-16 px, could not be
(0.34). The class must still be read from the handwriting. A scene is a pure function of (seed, split, index), so
nothing is stored and every run sees the same scenes. Validation scenes only use digit images of the digits
classifier's validation split (the same stratified 80/20 split, seed 0), so a backbone taken from that classifier
has never seen them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision import tv_tensors

from ..errors import UserError
from .masks import MaskFormat

SCENE_CLASSES = ["background"] + [str(d) for d in range(10)]
SPLITS = {"train": 0, "val": 1}
COVER = 0.5                 # a pixel belongs to a tile where the tile's paste alpha is at least this
MIN_CONTRAST = 80.0         # RGB distance wanted between a colour and most of the pixels it is painted over
SUPERSAMPLE = 4             # tile edges are drawn at 4x and averaged: anti-aliased like a photographed edge
# `--data` values that name this set: `digits`, the default data of every command, means the scenes for a
# segmentation or detection model (the way `digits` is the classifier's embedded set)
EMBEDDED = ("scenes", "digits")
SCENES = MaskFormat("digit scenes", num_classes=len(SCENE_CLASSES), stored_ignore=255)   # 255: padding only


@dataclass(frozen=True)
class SceneSpec:
    """What the scene set looks like; `task_options.scenes` in a recipe may override any field."""
    size: int = 128                         # square scenes, pixels
    digits: tuple[int, int] = (1, 3)        # tiles (each with one digit) per scene, inclusive
    scale: tuple[int, int] = (48, 96)       # tile height in pixels, inclusive (width: 0.75-1.33x of it)
    train_scenes: int = 2000
    val_scenes: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if not (1 <= self.digits[0] <= self.digits[1] and 8 <= lo <= hi <= self.size):
            raise UserError(f"task_options.scenes: need 1 <= digits low <= high and 8 <= scale low <= high <= size, "
                            f"got digits {list(self.digits)}, scale {list(self.scale)}, size {self.size}")
        if self.train_scenes < 1 or self.val_scenes < 1:
            raise UserError(f"task_options.scenes: train_scenes and val_scenes must be >= 1, got "
                            f"{self.train_scenes} and {self.val_scenes}")


def is_scenes(data: str | None) -> bool:
    """Whether `--data` names the embedded scene set."""
    return str(data) in EMBEDDED


def scene_spec(options: dict[str, Any]) -> SceneSpec:
    """The scene set a config asks for: `task_options.scenes` (a mapping of `SceneSpec` fields), else the default."""
    given = options.get("scenes") or {}
    if not isinstance(given, dict):
        raise UserError(f"task_options.scenes must be a mapping of scene settings, got {given!r}")
    fields = {f.name: f for f in dataclasses.fields(SceneSpec)}
    for key in given:
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=2)
            raise UserError(f"task_options.scenes: unknown setting {key!r}"
                            f"{'; did you mean ' + ', '.join(close) + '?' if close else ''}")
    try:
        values = {k: tuple(int(x) for x in v) if isinstance(v, (list, tuple)) else int(v) for k, v in given.items()}
    except (TypeError, ValueError):
        raise UserError(f"task_options.scenes: integer settings expected, got {given!r}") from None
    for k in ("digits", "scale"):
        if k in values and (not isinstance(values[k], tuple) or len(values[k]) != 2):
            raise UserError(f"task_options.scenes.{k}: two integers [low, high] expected, got {given[k]!r}")
    return SceneSpec(**values)


@dataclass(frozen=True)
class Scene:
    image: np.ndarray           # [H, W, 3] uint8
    mask: np.ndarray            # [H, W] uint8, 0 background, d + 1 for digit d
    boxes: np.ndarray           # [N, 4] float32 xyxy pixels (x2, y2 exclusive edges)
    labels: np.ndarray          # [N] int64, d + 1
    sources: np.ndarray         # [N] index of each pasted digit in scikit-learn's `load_digits`


@lru_cache(maxsize=1)
def digit_pools() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """{"train"/"val": (ink [N, 8, 8] in [0, 1], digit [N], index into `load_digits` [N])}: the digits
    classifier's stratified 80/20 split (seed 0)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    bunch = load_digits()
    ink = (bunch.images / 16.0).astype(np.float32)          # ink levels 0..16
    split = train_test_split(np.arange(len(bunch.target)), test_size=0.2, random_state=0, stratify=bunch.target)
    return {name: (ink[idx], bunch.target[idx], idx) for name, idx in zip(("train", "val"), split)}


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """[size, size, 3] float: smooth noise, a linear gradient or stripes."""
    kind = rng.integers(3)
    c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    if kind == 0:      # low-frequency noise: a coarse random grid upsampled
        cells = int(rng.integers(2, 9))
        grid = torch.from_numpy(rng.uniform(0, 1, (1, 1, cells, cells)).astype(np.float32))
        t = F.interpolate(grid, size=(size, size), mode="bicubic", align_corners=False)[0, 0].clamp(0, 1).numpy()
    else:
        angle = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        along = (xx * np.cos(angle) + yy * np.sin(angle)) / size        # [size, size], roughly in [-1, 1.5]
        if kind == 1:
            t = (along - along.min()) / max(float(np.ptp(along)), 1e-6)
        else:
            period = rng.uniform(4, 24) / size
            t = (np.sin(2 * np.pi * along / period) > 0).astype(np.float32)
    return c1 + t[..., None] * (c2 - c1)


def _tile_shape(rng: np.random.Generator, scale: tuple[int, int], size: int) -> tuple[int, int]:
    """A tile's (height, width): height in `scale`, width 0.75-1.33x of it (within the scene)."""
    h = int(rng.integers(scale[0], scale[1] + 1))
    return h, int(np.clip(round(h * rng.uniform(0.75, 1.33)), min(scale[0], h), size))


def _tile_alpha(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A tile's coverage [h, w] in [0, 1]: a superellipse |x|^p + |y|^p <= 1, p from 3 (a squircle, which still
    holds a centred square of 0.79 of its side: room for a large digit) to 8 (a rounded rectangle)."""
    (h, w), k = shape, SUPERSAMPLE
    p = float(rng.uniform(3.0, 8.0))
    yy = np.abs((np.arange(h * k, dtype=np.float32) + 0.5) / (h * k) * 2 - 1) ** p   # sub-pixel centres
    xx = np.abs((np.arange(w * k, dtype=np.float32) + 0.5) / (w * k) * 2 - 1) ** p
    inside = yy[:, None] + xx[None, :] <= 1                                  # [h*k, w*k]
    return inside.reshape(h, k, w, k).sum(axis=(1, 3), dtype=np.float32) / (k * k)


def _digit_ink(rng: np.random.Generator, digit: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, int, int]:
    """The 8x8 ink upscaled (bicubic) to 66-80% of the tile's smaller side (its blank 8x8 margins keep the strokes
    inside the squircle), and its top-left corner in the tile, centred with a small jitter. Large on purpose: the
    class is read from it, at the scale a 128x128 scene allows."""
    h, w = shape
    side = max(8, int(round(min(h, w) * rng.uniform(0.66, 0.8))))
    t = torch.from_numpy(digit)[None, None]
    ink = F.interpolate(t, size=(side, side), mode="bicubic", align_corners=False)[0, 0]
    ink = ((ink - 0.1) / 0.5).clamp(0, 1).numpy()       # ink levels 0.6-1 become a solid stroke, faint ones fade
    jitter = lambda free: int(round(free / 2 + rng.uniform(-0.25, 0.25) * free))   # noqa: E731
    return ink, jitter(h - side), jitter(w - side)


def _colour(rng: np.random.Generator, under: np.ndarray, *, dark: bool = False) -> np.ndarray:
    """A random colour (`dark`: at 15-45% brightness) far from most of the pixels `under` [K, 3] it will cover
    (best of 20 draws)."""
    if len(under) == 0:
        return rng.uniform(0, 255, 3)
    best, best_score = None, -1.0
    under = under[:: max(1, len(under) // 256)]         # a sample is enough for a percentile
    for _ in range(20):
        colour = rng.uniform(0, 255, 3) * (rng.uniform(0.15, 0.45) if dark else 1.0)
        score = float(np.percentile(np.linalg.norm(under - colour, axis=1), 10))
        if score > best_score:
            best, best_score = colour, score
        if score >= MIN_CONTRAST:
            break
    return best


def _paste_tile(rng: np.random.Generator, image: np.ndarray, alpha: np.ndarray, digit: np.ndarray,
                corner: tuple[int, int]) -> np.ndarray:
    """Paint a tile (a dark colour with a soft shading gradient) and its digit (a pale tint of that colour: light
    ink on dark, as in the digits set the classifier's backbone learned) into `image` in place; returns the tile's
    mask [h, w]."""
    (y, x), (h, w) = corner, alpha.shape
    region, covered = image[y:y + h, x:x + w], alpha >= COVER
    colour = _colour(rng, region[covered], dark=True)
    shade = np.linspace(-1, 1, h)[:, None, None] * rng.uniform(-15, 15, 3)        # [h, 1, 3] top-to-bottom
    tile = np.broadcast_to(colour + shade, (h, w, 3))
    ink, dy, dx = _digit_ink(rng, digit, (h, w))
    window = (slice(dy, dy + ink.shape[0]), slice(dx, dx + ink.shape[1]))
    pen = colour + rng.uniform(0.7, 0.9) * (255 - colour)
    tile = tile.copy()
    tile[window] = tile[window] * (1 - ink[..., None]) + pen * ink[..., None]
    a = alpha[..., None]
    image[y:y + h, x:x + w] = region * (1 - a) + tile * a
    return covered


def make_scene(spec: SceneSpec, split: str, index: int) -> Scene:
    """Scene `index` of `split`: the same arrays for the same (spec, split, index), on every machine."""
    rng = np.random.default_rng([spec.seed, SPLITS[split], index])
    inks, digits, indices = digit_pools()[split]
    image = _background(rng, spec.size)
    mask = np.zeros((spec.size, spec.size), np.uint8)
    taken = np.zeros((spec.size, spec.size), bool)
    boxes, labels, sources = [], [], []
    for _ in range(int(rng.integers(spec.digits[0], spec.digits[1] + 1))):
        pick = int(rng.integers(len(digits)))
        shape, placed = _tile_shape(rng, spec.scale, spec.size), None
        for _ in range(3):      # no free spot: try a smaller tile, then the scene keeps the tiles it has
            placed = _place(rng, shape, taken)
            if placed is not None or shape[0] == spec.scale[0]:
                break
            shape = tuple(max(spec.scale[0], int(v * 0.8)) for v in shape)
        if placed is None:
            continue
        y, x = placed
        alpha = _tile_alpha(rng, shape)
        covered = _paste_tile(rng, image, alpha, inks[pick], (y, x))
        label = int(digits[pick]) + 1
        mask[y:y + alpha.shape[0], x:x + alpha.shape[1]][covered] = label
        rows, cols = np.nonzero(covered)
        boxes.append([x + cols.min(), y + rows.min(), x + cols.max() + 1, y + rows.max() + 1])
        labels.append(label)
        sources.append(int(indices[pick]))
    image = image + rng.normal(0, rng.uniform(0, 12), image.shape)          # sensor-like noise over everything
    return Scene(np.clip(image, 0, 255).round().astype(np.uint8), mask, np.asarray(boxes, np.float32).reshape(-1, 4),
                 np.asarray(labels, np.int64), np.asarray(sources, np.int64))


def _place(rng: np.random.Generator, shape: tuple[int, int], taken: np.ndarray) -> tuple[int, int] | None:
    """A top-left corner where the tile's window (with a 2 px margin) overlaps no window pasted before, so that
    tiles never touch and every mask pixel and box belongs to one tile."""
    (h, w), size = shape, taken.shape[0]
    for _ in range(30):
        y, x = int(rng.integers(size - h + 1)), int(rng.integers(size - w + 1))
        if not taken[max(y - 2, 0):y + h + 2, max(x - 2, 0):x + w + 2].any():
            taken[y:y + h, x:x + w] = True
            return y, x
    return None


class _Scenes(Dataset):
    """Common part: `len()`, the `(index, height, width)` keys of the training sampler, class names."""

    def __init__(self, spec: SceneSpec, split: str, transform: Callable | None) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown scene split {split!r}; expected train or val")
        self.spec, self.split, self.transform = spec, split, transform
        self.classes, self.num_classes = list(SCENE_CLASSES), len(SCENE_CLASSES)
        # each scene is drawn once per process and kept (2,000 scenes of 128x128: ~130 MB) instead of every
        # epoch; the views hand out copies, so a transform cannot change a kept scene
        self._drawn: dict[int, Scene] = {}

    def __len__(self) -> int:
        return self.spec.train_scenes if self.split == "train" else self.spec.val_scenes

    @staticmethod
    def _key(key: int | tuple[int, int, int]) -> tuple[int, tuple[int, int] | None]:
        return (int(key[0]), (int(key[1]), int(key[2]))) if isinstance(key, tuple) else (int(key), None)

    def scene(self, index: int) -> Scene:
        if not 0 <= index < len(self):
            raise IndexError(f"scene {index} out of range (the {self.split} split has {len(self)})")
        if index not in self._drawn:
            self._drawn[index] = make_scene(self.spec, self.split, index)
        return self._drawn[index]


class SceneMasks(_Scenes):
    """Segmentation view: `(image, int64 mask)` after `transform(image uint8, mask uint8, crop size or None)`,
    exactly like `MaskPairs` (no ignore pixels: 255 only appears where a transform pads or rotates)."""

    stored_ignore = 255

    def __getitem__(self, key: int | tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, size = self._key(key)
        s = self.scene(index)
        image = tv_tensors.Image(torch.from_numpy(s.image).permute(2, 0, 1).contiguous())   # HWC -> CHW, a copy
        mask = tv_tensors.Mask(torch.from_numpy(s.mask.copy()))
        if self.transform is not None:
            image, mask = self.transform(image, mask, size)
        return image, mask.as_subclass(torch.Tensor).long()


class SceneBoxes(_Scenes):
    """Detection view: `(image, {"boxes" xyxy, "labels" 1..10, "image_id", "orig_size"})` like `CocoBoxes`, with
    `coco` (pycocotools ground truth built in memory), `category_ids` (label l -> category id l) and `class_names`."""

    def __init__(self, spec: SceneSpec, split: str, transform: Callable | None = None) -> None:
        super().__init__(spec, split, transform)
        self.class_names = list(SCENE_CLASSES)
        self.category_ids = list(range(1, len(SCENE_CLASSES)))
        self.ann_file = f"digit scenes ({split})"        # named in messages where COCO names its json
        self._coco = None

    @property
    def coco(self):
        """pycocotools' `COCO` of this split's boxes, built on first use (COCOeval needs one)."""
        if self._coco is None:
            self._coco = coco_ground_truth(self)
        return self._coco

    def __getitem__(self, key: int | tuple[int, int, int]) -> tuple[torch.Tensor, dict[str, Any]]:
        index, size = self._key(key)
        s = self.scene(index)
        image = tv_tensors.Image(torch.from_numpy(s.image).permute(2, 0, 1).contiguous())   # HWC -> CHW, a copy
        H, W = s.mask.shape
        boxes = torch.from_numpy(s.boxes.copy())
        target = {"boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(H, W)),
                  "labels": torch.from_numpy(s.labels.copy())}
        if self.transform is not None:
            image, target = self.transform(image, target, size)
        return image, {"boxes": target["boxes"].as_subclass(torch.Tensor), "labels": target["labels"],
                       "image_id": index + 1, "orig_size": (H, W)}


def coco_dict(data: _Scenes) -> dict[str, Any]:
    """The split as a COCO instances dict (image id = index + 1, box area as `area`: there are no polygons)."""
    images, anns = [], []
    for index in range(len(data)):
        s = data.scene(index)
        images.append({"id": index + 1, "file_name": f"{data.split}_{index:05d}.png", "height": s.mask.shape[0],
                       "width": s.mask.shape[1]})
        for (x1, y1, x2, y2), label in zip(s.boxes.tolist(), s.labels.tolist()):
            anns.append({"id": len(anns) + 1, "image_id": index + 1, "category_id": int(label),
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    categories = [{"id": i, "name": name} for i, name in enumerate(SCENE_CLASSES) if i > 0]
    return {"images": images, "annotations": anns, "categories": categories}


def coco_ground_truth(data: _Scenes):
    from pycocotools.coco import COCO
    coco = COCO()
    coco.dataset = coco_dict(data)
    with contextlib.redirect_stdout(io.StringIO()):     # pycocotools reports on stdout, where the CLI prints JSON
        coco.createIndex()
    return coco
