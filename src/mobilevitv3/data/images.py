"""The one image reader of every command (train, eval, predict, quantization calibration): pixels as a viewer
shows them, as 8-bit RGB.

* EXIF orientation is applied (phone photos are stored sideways with a rotate flag).
* 16-bit and 32-bit images are scaled to 8 bits, never clipped: I;16 (PNG/TIFF grayscale) by 255/65535, `I` by
  the 16-bit range when its values fit it (else its own min..max), `F` by [0, 1] when it fits (else min..max).
  16-bit RGB(A) PNGs arrive from Pillow already reduced to 8 bits per channel.
* Transparency (RGBA, LA, PA, palette or grayscale with a transparent colour) is composited on WHITE, as a browser
  or an image viewer shows a transparent PNG on its default page; the colour stored under transparent pixels is
  often black or garbage and must not reach the model.
* CMYK, YCbCr, LAB, HSV, 1-bit and palette images are converted to RGB by Pillow.
`read_rgb` raises `ImageError` (a `UserError`: one line naming the file) for a missing file, a folder, or a file
that cannot be decoded; `try_read_rgb` logs that line and returns None (data sets count and skip such files).
`read_bgr` / `try_read_bgr`: the same pixels as the HWC BGR array the v1 family's OpenCV pipeline works on. Pillow
decodes for both: its JPEG decode matched `cv2.imread` pixel for pixel (libjpeg-turbo in both; checked at quality
75/90/95 and 4:2:0/4:2:2/4:4:4), while `cv2.imread` drops alpha and returns truncated files padded without an error.
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import UserError, existing_file

log = logging.getLogger(__name__)
BACKGROUND = (255, 255, 255)        # what transparent pixels become
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
T = TypeVar("T")


class ImageError(UserError):
    """An image path that is not a readable image (missing, a folder, truncated, not an image)."""


def as_rgb(im: Image.Image) -> Image.Image:
    """An opened image as 8-bit RGB: EXIF orientation applied, deep images scaled, transparency on white."""
    try:
        im = ImageOps.exif_transpose(im) or im
    except (OSError, ValueError, SyntaxError, KeyError, TypeError) as e:   # a malformed EXIF block
        log.debug("EXIF orientation not applied (%s)", e)
    if im.mode.startswith("I") or im.mode == "F":
        return _deep_to_rgb(im)
    if im.mode == "P" or (im.mode in ("L", "RGB") and "transparency" in im.info):
        im = im.convert("RGBA")         # palette / colour-key transparency becomes a real alpha channel
    if im.mode in _ALPHA_MODES:
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")


def _deep_to_rgb(im: Image.Image) -> Image.Image:
    """I;16*, I (32-bit int) and F (float) images -> 8-bit RGB by scaling (Pillow's own convert clips at 255)."""
    values = np.asarray(im, dtype=np.float64)
    if im.mode.startswith("I;16"):
        lo, hi = 0.0, 65535.0
    elif im.mode == "F" and values.size and values.min() >= 0 and values.max() <= 1:
        lo, hi = 0.0, 1.0
    elif im.mode == "I" and values.size and values.min() >= 0 and values.max() <= 65535:
        lo, hi = 0.0, 65535.0             # a 16-bit file that Pillow widened to 32-bit ints
    else:
        lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    scaled = (values - lo) * (255.0 / max(hi - lo, 1e-12))
    gray = Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")
    return gray.convert("RGB")


def read_rgb(path: str | Path) -> Image.Image:
    """The image at `path` as 8-bit RGB (see the module notes), or `ImageError` naming the file and the reason."""
    p = existing_file(path, "image", error=ImageError)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # Pillow's palette-transparency and EXIF chatter
            with Image.open(p) as im:
                im.load()               # decode every pixel now: a truncated file is an error here
                return as_rgb(im)
    except Image.DecompressionBombError as e:
        raise ImageError(f"{p}: too large to decode safely ({e})") from None
    except UnidentifiedImageError:
        raise ImageError(f"{p}: not an image file Pillow can read") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageError(f"{p}: cannot decode the image ({e})") from None


def rgb_to_bgr(rgb: np.ndarray) -> np.ndarray:
    """An HWC RGB array as the contiguous HWC BGR array OpenCV works on."""
    return np.ascontiguousarray(rgb[..., ::-1])


def read_bgr(path: str | Path) -> np.ndarray:
    """The image at `path` as HWC uint8 BGR for the v1 family's OpenCV pipeline, or `ImageError`."""
    return rgb_to_bgr(np.asarray(read_rgb(path)))


def _or_none(read: Callable[[str | Path], T], path: str | Path) -> T | None:
    """`read(path)`, or None (logged as a warning with the reason) for a path that is not a readable image."""
    try:
        return read(path)
    except ImageError as e:
        log.warning("skipping %s", e)
        return None


def try_read_rgb(path: str | Path) -> Image.Image | None:
    """`read_rgb`, or None (logged) for a path that is not a readable image: data sets count and skip those."""
    return _or_none(read_rgb, path)


def try_read_bgr(path: str | Path) -> np.ndarray | None:
    """`read_bgr`, or None (logged)."""
    return _or_none(read_bgr, path)
