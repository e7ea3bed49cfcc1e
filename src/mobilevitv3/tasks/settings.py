"""Evaluation settings: how `eval`, `predict` and INT8 calibration read images for a model, apart from the training
config (a loaded model comes with them), and the identity a training run records so that its files say the
sizes it was evaluated at.

Resolution rule (the data code's, shared with training-time validation): a setting given here wins over the
model's identity; an identity that knows its evaluation sizes (a release tag, or a training run) gives them;
otherwise an untagged model evaluates at `image_size` (classification after a 9/8 resize, dense tasks square).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from torch import nn

from ..data.transforms import pipeline
from ..models.identity import ModelIdentity
from .dense import dense_input


@dataclass(frozen=True)
class EvalSettings:
    image_size: int = 64                    # the untagged default: a model of ours trained at the library default
    eval_resize: int | None = None          # shorter side before the centre crop (classification)
    eval_crop: int | None = None            # centre crop (classification); the square size (dense tasks)
    interpolation: str | None = None        # None: the identity's
    channel_order: str | None = None        # None: the identity's
    task_options: dict[str, Any] = field(default_factory=dict)   # the task's own (dataset kind, classes, ...)
    data: str | None = None                 # the data set being read (set by the command)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> EvalSettings:
        """The evaluation fields of a stored mapping (a training config, or the `eval_config` of an INT8 file)."""
        known = {f.name for f in fields(cls)} - {"data"}
        return cls(**{k: v for k, v in (values or {}).items() if k in known and v is not None})

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "data"}

    def at_size(self, size: int) -> EvalSettings:
        """Evaluate at `size` x `size` (the crop; dense tasks: the square size)."""
        return replace(self, image_size=size, eval_crop=size)

    def pinned_to(self, identity: ModelIdentity) -> EvalSettings:
        """These settings completed by an identity that records its evaluation (a training run): its transform
        where none is set, its sizes where no size is set (a size given here still wins, as in the data code)."""
        if identity.preprocess_from != "training":
            return self
        pre = identity.preprocess
        out = replace(self, interpolation=self.interpolation or pre.interpolation,
                      channel_order=self.channel_order or pre.channel_order)
        if self.eval_crop is not None or self.eval_resize is not None:
            return out
        size = pre.input_size[0]
        if identity.task == "classification":
            return replace(out, eval_resize=pre.resize, eval_crop=pre.crop, image_size=size)
        return replace(out, eval_crop=size, image_size=size)

    def with_classes(self, names: tuple[str, ...] | list[str] | None) -> EvalSettings:
        return replace(self, task_options={**self.task_options, "classes": list(names)}) if names else self


def evaluated_identity(cfg: Any, model: nn.Module) -> ModelIdentity:
    """`model`'s identity with the preprocessing (sizes included) evaluation uses under `cfg` (a training config
    or `EvalSettings`): what `train` stores, so that every file written from the run follows it."""
    ident = model.identity
    if ident.task == "classification":
        p = pipeline(cfg, model)
        pre = replace(ident.preprocess, channel_order=p.channel_order, interpolation=p.interpolation,
                      resize=p.eval_resize, crop=p.eval_crop)
    else:
        inp = dense_input(cfg, model)
        pre = replace(ident.preprocess, channel_order=inp.channel_order, interpolation=inp.interpolation,
                      resize=tuple(inp.eval_size), crop=None)
    return ident.evaluated_at(pre)
