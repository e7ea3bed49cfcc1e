"""What a model is, as data: architecture, tag, task, class count and names, the keyword arguments it was built
with, and the preprocessing its weights expect. `create_model` sets it, checkpoints and exports store it, and data
code reads it (never a name string).

The preprocessing says where it comes from (`preprocess_from`): a release tag (that release's evaluation sizes),
a training run (the sizes the run evaluated at, which `train` records), or only the family's input convention
(v1 family: BGR, bilinear; v2 family: RGB, bicubic; [0, 1] without mean/std) whose 288/256 sizes are a placeholder.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

PreprocessSource = Literal["family", "tag", "training"]


@dataclass(frozen=True)
class Preprocess:
    """How the official pipeline fed images: [0, 1] scaling, no mean/std."""
    channel_order: Literal["rgb", "bgr"] = "rgb"
    resize: int | tuple[int, int] = 288     # int: shorter side; (h, w): exact size
    crop: int | None = 256                  # centre crop after the resize (None: none)
    interpolation: Literal["bilinear", "bicubic"] = "bicubic"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the image the network sees: the crop, else the exact resize."""
        size = self.crop if self.crop else self.resize
        return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def family_preprocess(family: str) -> Preprocess:
    # v1-based releases read images with OpenCV (BGR) and resize bilinearly; v2-based ones are RGB, bicubic.
    v1 = family == "v1"
    return Preprocess("bgr" if v1 else "rgb", interpolation="bilinear" if v1 else "bicubic")


@dataclass(frozen=True)
class ModelIdentity:
    """Named apart from `torch.nn.Identity` (a layer); `mobilevitv3.Identity` stays as its public alias."""
    arch: str | None                        # registry architecture, e.g. 'deeplabv3_mobilevitv3_xxs'; None: built
    task: str                               # from a config directly
    family: str                             # 'v1' or 'v2' (the backbone's block family)
    num_classes: int
    preprocess: Preprocess
    tag: str | None = None                  # 'in1k', 'voc', ...: the release whose settings the model has
    dataset: str | None = None              # 'imagenet', 'voc', 'ade20k', 'coco', or None
    class_names: tuple[str, ...] | None = None
    build: dict[str, Any] = field(default_factory=dict)   # plain keyword arguments of create_model (rebuilding)
    preprocess_from: PreprocessSource = "family"

    @property
    def name(self) -> str:
        base = self.arch or f"<{self.task} model>"
        return f"{base}.{self.tag}" if self.tag else base

    @property
    def eval_size(self) -> tuple[int, int] | None:
        """The (height, width) the weights were evaluated at (a tag's or a training run's); None when unknown."""
        return None if self.preprocess_from == "family" else self.preprocess.input_size

    def with_classes(self, num_classes: int, names: list[str] | tuple[str, ...] | None = None) -> ModelIdentity:
        if names is not None and len(names) != num_classes:
            raise ValueError(f"{len(names)} class names for {num_classes} classes")
        return replace(self, num_classes=num_classes, class_names=tuple(names) if names else None)

    def evaluated_at(self, preprocess: Preprocess) -> ModelIdentity:
        """This identity with the preprocessing (sizes included) a training run evaluated the weights with."""
        return replace(self, preprocess=preprocess, preprocess_from="training")

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (stored in checkpoints read with weights_only=True and in export metadata)."""
        out = asdict(self)
        out["preprocess"] = {k: list(v) if isinstance(v, tuple) else v for k, v in out["preprocess"].items()}
        out["class_names"] = list(self.class_names) if self.class_names else None
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelIdentity:
        """The inverse of `to_dict`; a record written before `preprocess_from` existed gets the tag's or family's."""
        known = {f.name for f in fields(cls)} - {"preprocess", "class_names", "preprocess_from", "build"}
        pre = {k: tuple(v) if isinstance(v, list) else v for k, v in d["preprocess"].items()}
        names = d.get("class_names")
        source = d.get("preprocess_from") or ("tag" if d.get("tag") else "family")
        return cls(**{k: v for k, v in d.items() if k in known}, preprocess=Preprocess(**pre),
                   class_names=tuple(names) if names else None, build=dict(d.get("build") or {}),
                   preprocess_from=source)

    @property
    def model_name(self) -> str:
        """`architecture[.tag]`, the name `create_model` rebuilds this model from."""
        if self.arch is None:
            raise ValueError("a model built from a config directly has no registry name")
        return f"{self.arch}.{self.tag}" if self.tag else self.arch


Identity = ModelIdentity   # the public name since the first release


def replace_task(identity: ModelIdentity, task: str, num_classes: int) -> ModelIdentity:
    """A dense model's identity from its backbone's (same family and input convention)."""
    return replace(identity, task=task, num_classes=num_classes)


class Identified:
    """Mixin for the three model classes: `name` and `task` read from `identity`."""
    identity: ModelIdentity
    # plain Python data, never read by a forward: TorchScript leaves them out
    __jit_ignored_attributes__ = ["identity"]
    __jit_unused_properties__ = ["name", "task"]

    @property
    def name(self) -> str:
        return self.identity.name

    @property
    def task(self) -> str:
        return self.identity.task
