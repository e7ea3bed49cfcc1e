"""`use_coco_data` of the official VOC recipes (training.md §9.3): COCO train2017 images with their instance masks
mapped to the 20 VOC classes, as the `coco_preprocess` folder the official runs trained on.

Mask rule: start from background (0); for each annotation in file order, crowd included, of one of the 20 mapped
categories, decode it with pycocotools at full resolution and write its VOC index into the pixels that are still
0 (the first instance wins overlaps); the other 60 categories stay background. Images under 256 px on a side and
masks with fewer than 2 values are left out; kept images are re-saved as JPEG quality 75 (PIL's default, as the
official preparation did). The cache (`rgb_train/`, `annot_train/`, `train_2017.txt` written last) is built once,
file by file atomically, and an existing official `coco_preprocess` folder is read as it is.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import UserError
from .images import read_rgb

log = logging.getLogger(__name__)
# COCO category id -> VOC index (the official list's order; 0 = background)
COCO_TO_VOC = {5: 1, 2: 2, 16: 3, 9: 4, 44: 5, 6: 6, 3: 7, 17: 8, 62: 9, 21: 10, 67: 11, 18: 12, 19: 13, 4: 14,
               1: 15, 64: 16, 20: 17, 63: 18, 7: 19, 72: 20}
LIST_FILE = "train_2017.txt"
MIN_SIDE = 256
JPEG_QUALITY = 75


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write through a temporary file in the same folder and rename: a reader never sees a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def voc_mask(coco: Any, image_id: int) -> np.ndarray:
    """The uint8 VOC-class mask [H, W] of one COCO image (a pycocotools `COCO` index)."""
    info = coco.imgs[image_id]
    mask = np.zeros((info["height"], info["width"]), dtype=np.uint8)
    for ann in coco.imgToAnns.get(image_id, []):          # file order; crowd regions included
        voc = COCO_TO_VOC.get(ann["category_id"])
        if voc is None:
            continue
        mask[(coco.annToMask(ann) > 0) & (mask == 0)] = voc
    return mask


def keep(mask: np.ndarray) -> bool:
    """The official selection: both sides >= 256 px and at least two distinct mask values."""
    return min(mask.shape) >= MIN_SIDE and len(np.unique(mask)) >= 2


def _png(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(mask, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(path: Path) -> bytes:
    buf = io.BytesIO()
    read_rgb(path).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _load_coco(ann_file: Path) -> Any:
    from pycocotools.coco import COCO
    with contextlib.redirect_stdout(io.StringIO()):      # pycocotools prints progress on stdout (our JSON)
        try:
            return COCO(str(ann_file))
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"{ann_file}: not a COCO instances file ({e})") from None


def _one(coco: Any, image_id: int, image_dir: Path, cache: Path, reencode: bool) -> tuple[str, str] | None:
    stem = Path(coco.imgs[image_id]["file_name"]).stem
    mask_rel, rgb_rel = f"annot_train/{stem}.png", f"rgb_train/{stem}.jpg"
    source = image_dir / coco.imgs[image_id]["file_name"]
    image_rel = rgb_rel if reencode else str(source.resolve())
    if (cache / mask_rel).is_file() and (not reencode or (cache / rgb_rel).is_file()):
        return image_rel, mask_rel                        # done by an earlier, interrupted build
    mask = voc_mask(coco, image_id)
    if not keep(mask):
        return None
    if not source.is_file():
        raise UserError(f"{source}: listed in the COCO annotations but missing")
    if reencode:
        atomic_write_bytes(cache / rgb_rel, _jpeg(source))
    atomic_write_bytes(cache / mask_rel, _png(mask))      # the mask last: its presence marks the pair done
    return image_rel, mask_rel


def build_cache(coco_root: str | Path, cache: str | Path, *, reencode: bool = True, threads: int = 4) -> Path:
    """Write the `coco_preprocess` folder for COCO train2017 under `cache`; returns its list file."""
    root, cache = Path(coco_root), Path(cache)
    ann_file, image_dir = root / "annotations" / "instances_train2017.json", root / "train2017"
    for path in (ann_file, image_dir):
        if not path.exists():
            raise UserError(f"{path}: not found (COCO 2017 layout: annotations/instances_train2017.json, "
                            "train2017/)")
    coco = _load_coco(ann_file)
    ids = sorted(coco.imgs)
    log.info("use_coco_data: building VOC masks for %d COCO images into %s (once)", len(ids), cache)
    with ThreadPoolExecutor(max(1, threads)) as pool:     # pycocotools, zlib and libjpeg release the GIL
        pairs = [p for p in pool.map(lambda i: _one(coco, i, image_dir, cache, reencode), ids) if p is not None]
    if not pairs:
        raise UserError(f"{ann_file}: no image has a VOC-class instance")
    atomic_write_bytes(cache / LIST_FILE, "".join(f"{a} {b}\n" for a, b in pairs).encode())
    log.info("use_coco_data: %d of %d COCO images kept", len(pairs), len(ids))
    return cache / LIST_FILE


def read_pairs(list_file: Path) -> list[tuple[Path, Path]]:
    """'image mask' per line, relative to the list's folder (absolute paths as they are)."""
    base, pairs = list_file.parent, []
    for n, line in enumerate(list_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise UserError(f"{list_file}:{n}: expected 'image_path mask_path'")
        image, mask = (Path(p) if Path(p).is_absolute() and Path(p).exists() else base / p.lstrip("/")
                       for p in parts)
        pairs.append((image, mask))
    return pairs


def coco_voc_pairs(coco_root: str | Path, cache: str | Path | None = None, *, reencode: bool = True,
                   threads: int = 4) -> list[tuple[Path, Path]]:
    """(image, VOC mask) pairs from COCO train2017: `coco_root` may itself be an official `coco_preprocess` folder
    (it holds `train_2017.txt`); else the cache (default `<coco_root>/coco_preprocess`) is used, built if needed."""
    root = Path(coco_root)
    if (root / LIST_FILE).is_file():
        return read_pairs(root / LIST_FILE)
    cache = Path(cache) if cache is not None else root / "coco_preprocess"
    list_file = cache / LIST_FILE
    if not list_file.is_file():
        build_cache(root, cache, reencode=reencode, threads=threads)
    return read_pairs(list_file)
