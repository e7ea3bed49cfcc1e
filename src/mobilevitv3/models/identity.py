"""What a model is, as data: architecture, tag, task, class count and names, and the preprocessing its weights
expect. `create_model` sets it, checkpoints and exports store it, and data code reads it (never a name string).

A model built directly from a `ModelConfig` gets its family's official input convention (v1 family: BGR,
bilinear; v2 family: RGB, bicubic; both [0, 1] without mean/std).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal


@dataclass(frozen=True)
class Preprocess:
    """How the official pipeline fed images: [0, 1] scaling, no mean/std."""
    channel_order: Literal["rgb", "bgr"] = "rgb"
    resize: int | tuple[int, int] = 288     # int: shorter side; (h, w): exact size
    crop: int | None = 256                  # centre crop after the resize (None: none)
    interpolation: Literal["bilinear", "bicubic"] = "bicubic"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)


def family_preprocess(family: str) -> Preprocess:
    # v1-based releases read images with OpenCV (BGR) and resize bilinearly; v2-based ones are RGB, bicubic.
    v1 = family == "v1"
    return Preprocess("bgr" if v1 else "rgb", interpolation="bilinear" if v1 else "bicubic")


@dataclass(frozen=True)
class Identity:
    arch: str | None                        # registry architecture, e.g. 'deeplabv3_mobilevitv3_xxs'; None: built
    task: str                               # from a config directly
    family: str                             # 'v1' or 'v2' (the backbone's block family)
    num_classes: int
    preprocess: Preprocess
    tag: str | None = None                  # 'in1k', 'voc', ...: the release whose settings the model has
    dataset: str | None = None              # 'imagenet', 'voc', 'ade20k', 'coco', or None
    class_names: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        base = self.arch or f"<{self.task} model>"
        return f"{base}.{self.tag}" if self.tag else base

    def with_classes(self, num_classes: int, names: list[str] | tuple[str, ...] | None = None) -> "Identity":
        if names is not None and len(names) != num_classes:
            raise ValueError(f"{len(names)} class names for {num_classes} classes")
        return replace(self, num_classes=num_classes, class_names=tuple(names) if names else None)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (stored in checkpoints read with weights_only=True and in export metadata)."""
        out = asdict(self)
        out["preprocess"] = {k: list(v) if isinstance(v, tuple) else v for k, v in out["preprocess"].items()}
        out["class_names"] = list(self.class_names) if self.class_names else None
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Identity":
        known = {f.name for f in fields(cls)}
        pre = {k: tuple(v) if isinstance(v, list) else v for k, v in d["preprocess"].items()}
        names = d.get("class_names")
        return cls(**{k: v for k, v in d.items() if k in known and k not in ("preprocess", "class_names")},
                   preprocess=Preprocess(**pre), class_names=tuple(names) if names else None)


def replace_task(identity: Identity, task: str, num_classes: int) -> Identity:
    """A dense model's identity from its backbone's (same family and input convention)."""
    return replace(identity, task=task, num_classes=num_classes)


class Identified:
    """Mixin for the three model classes: `name` and `task` read from `identity`."""
    identity: Identity
    # plain Python data, never read by a forward: TorchScript leaves them out
    __jit_ignored_attributes__ = ["identity"]
    __jit_unused_properties__ = ["name", "task"]

    @property
    def name(self) -> str:
        return self.identity.name

    @property
    def task(self) -> str:
        return self.identity.task
