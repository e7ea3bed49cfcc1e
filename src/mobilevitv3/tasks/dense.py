"""What segmentation and detection share: input preprocessing resolved from the model tag and the config, the
batch layout (a dict whose tensors the engine moves), class names, colours, and gathering across DDP ranks."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from PIL import Image
from torch import nn
from torch.utils.data import Dataset, Subset
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from ..data.classes import class_names
from ..data.images import as_rgb
from ..data.transforms import model_preprocess, tagged
from .metrics import rank_sum  # noqa: F401  (the dense tasks import it from here)


@dataclass(frozen=True)
class DenseInput:
    """How images enter a dense model: channel order, resize mode, evaluation size (h, w), mean/std."""
    channel_order: str
    interpolation: str
    eval_size: tuple[int, int]
    antialias: bool
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def kwargs(self) -> dict[str, Any]:
        return {"interpolation": self.interpolation, "channel_order": self.channel_order,
                "antialias": self.antialias, "mean": self.mean, "std": self.std}


def dense_input(cfg: Any, model: nn.Module) -> DenseInput:
    """Config fields win over the tag: `eval_crop` (or `eval_resize`) sets a square evaluation size; else the tag's
    exact resize (512x512 / 320x320); an untagged model evaluates at `image_size`. v1-based releases resized with
    OpenCV (no antialiasing), v2-based with PIL (antialiased)."""
    pre = model_preprocess(model)
    size = pre.resize if tagged(model) and isinstance(pre.resize, tuple) else None
    chosen = cfg.eval_crop or cfg.eval_resize
    size = (chosen, chosen) if chosen else size or (cfg.image_size, cfg.image_size)
    v1 = model.identity.family == "v1"
    return DenseInput(cfg.channel_order or pre.channel_order, cfg.interpolation or pre.interpolation,
                      tuple(size), antialias=not v1, mean=tuple(pre.mean), std=tuple(pre.std))


def base_dataset(dataset: Dataset) -> Dataset:
    """The data set under the engine's per-rank `Subset`."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dataset


def names_for(model: nn.Module) -> list[str] | None:
    """Class names: from the checkpoint (`model.class_names`), else the tag's data set when the class count fits."""
    ident = model.identity
    if ident.class_names and len(ident.class_names) == model.num_classes:
        return list(ident.class_names)
    if ident.dataset is not None:
        names = class_names(ident.dataset)
        return names if len(names) == model.num_classes else None
    return None


def palette(n: int) -> list[tuple[int, int, int]]:
    """Distinct colours per label: the bits of the label spread over the high bits of R, G and B (VOC's scheme)."""
    out = []
    for label in range(n):
        r = g = b = 0
        c = label
        for shift in range(7, -1, -1):
            r, g, b = r | ((c >> 0) & 1) << shift, g | ((c >> 1) & 1) << shift, b | ((c >> 2) & 1) << shift
            c >>= 3
        out.append((r, g, b))
    return out


def pil_to_image(im: Image.Image) -> tv_tensors.Image:
    return tv_tensors.Image(F.pil_to_tensor(as_rgb(im)))   # the one rule (EXIF, 16-bit, alpha) for API callers


def stack_batch(samples: Sequence[Any], target_key: str) -> dict[str, Any]:
    """`(image, target)` samples (None = unreadable) -> {"images" [B, 3, H, W], target_key: list, "skipped"}."""
    good = [s for s in samples if s is not None]
    images = torch.stack([s[0] for s in good]) if good else None
    return {"images": images, target_key: [s[1] for s in good], "skipped": len(samples) - len(good)}


def all_gather(obj: Any) -> list[Any]:
    """Every rank's `obj` (a one-element list without torch.distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def is_head(parameter_name: str) -> bool:
    """Heads and extra layers (trained at `head_lr_multiplier` x the scheduled lr): all but the backbone."""
    return not parameter_name.startswith("backbone.")
