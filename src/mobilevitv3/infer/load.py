"""The one loader: `load(source) -> (model, settings)` for every command that takes a model (eval, predict, export,
quantize) and for the runtime models.

`source` is one of our self-describing files alone (train's best.pt/last.pt, convert's .safetensors: architecture,
tag, class count and names, the evaluation sizes), an architecture NAME with `weights` (official, timm or ours; the
class count from the file unless `num_classes` says it), a bare NAME (random weights, where the caller allows it),
or an exported `.onnx`/`.pte` file (run in its own runtime by `runtime.load_runtime_model`). Each file is read once:
the tensors, the identity and the saved training config come from that one read. Which copy of a file holding raw
and EMA weights is used is `copy` ('model' unless 'ema'), and the log says which.
"""
from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from ..errors import UserError, device_from
from ..models import create_model, model_from_identity
from ..models.registry import described
from ..tasks import EvalSettings, evaluated_identity
from ..weights import Weights, check_file, read_weights
from .runtime import is_runtime_file, load_runtime_model

WEIGHT_SUFFIXES = (".pt", ".pth", ".pt2", ".bin", ".safetensors", ".ckpt")
Copy = Literal["model", "ema"] | None


def imagenet_classes() -> list[str]:
    return (resources.files("mobilevitv3") / "data" / "imagenet_classes.txt").read_text().splitlines()


def is_file_argument(source: str | os.PathLike) -> bool:
    """`source` names a file (a checkpoint or an exported model) rather than an architecture."""
    return Path(source).suffix in WEIGHT_SUFFIXES + (".onnx", ".pte") or Path(source).exists()


def load(source: str | os.PathLike, weights: str | os.PathLike | None = None, *, num_classes: int | None = None,
         copy: Copy = None, device: torch.device | str = "cpu", threads: int | None = None,
         untrained: bool = False) -> tuple[nn.Module, EvalSettings]:
    """An eval-mode model (identity with class names when known) and the settings to evaluate it with.
    `untrained`: a bare architecture NAME is allowed and gives random weights (export and quantize of a layout)."""
    if not isinstance(source, (str, os.PathLike)):
        raise UserError(f"a model is a checkpoint path or an architecture name, got {source!r}")
    if is_runtime_file(source):   # an exported / quantized .onnx or .pte: runs in its own runtime
        return _runtime(Path(source), weights=weights, num_classes=num_classes, copy=copy, threads=threads)
    file = read_source(source, weights, copy=copy, untrained=untrained)
    return from_file(source, file, num_classes=num_classes, device=device)


def read_source(source: str | os.PathLike, weights: str | os.PathLike | None = None, *, copy: Copy = None,
                untrained: bool = False) -> Weights | None:
    """The one read of the weights a command was given (None: a bare NAME, random weights)."""
    if is_file_argument(source):
        if weights is not None:
            raise UserError(f"{source} is a checkpoint: give either a checkpoint or NAME --weights FILE, not both")
        return read_weights(check_file(source, "checkpoint"), copy=copy)
    if weights is None:
        if untrained:
            return None
        raise UserError(f"{source}: --weights FILE is needed with an architecture name (or give a checkpoint of "
                        f"this project alone)")
    return read_weights(check_file(weights), copy=copy)


def from_file(source: str | os.PathLike, file: Weights | None, *, num_classes: int | None = None,
              device: torch.device | str = "cpu") -> tuple[nn.Module, EvalSettings]:
    """The model `source` names, with `file`'s weights (already read), and its evaluation settings."""
    if file is None:
        model = create_model(str(source), num_classes=num_classes)
    elif is_file_argument(source):
        model = model_from_identity(described(file), weights=file, num_classes=num_classes)
    else:
        model = create_model(str(source), num_classes=num_classes, weights=file)
    settings = EvalSettings.from_dict(file.config if file else None)
    if file is not None and file.config and model.identity.preprocess_from != "training":
        model.identity = evaluated_identity(settings, model)   # a checkpoint from before identities held sizes
    ident = model.identity
    if not ident.class_names and ident.dataset == "imagenet" and model.num_classes == 1000:
        model.identity = ident.with_classes(1000, imagenet_classes())
    dev = device_from(device) if isinstance(device, str) else device
    return model.to(dev).eval(), _settings_for(model, settings)


def _settings_for(model: nn.Module, settings: EvalSettings) -> EvalSettings:
    return settings.pinned_to(model.identity).with_classes(model.identity.class_names)


def _runtime(path: Path, *, weights, num_classes, copy, threads) -> tuple[nn.Module, EvalSettings]:
    """An exported file with the settings it carries: those `quantize` stored (`eval_config`), else its
    identity's."""
    given = [flag for flag, value in (("--weights", weights), ("--num-classes", num_classes), ("--ema", copy))
             if value is not None]
    if given:
        raise UserError(f"{path.name} is an exported model that carries its own weights and classes: give it "
                        f"alone, without {', '.join(given)}")
    model = load_runtime_model(path, threads=threads)
    stored = json.loads(model.metadata.get("eval_config", "{}"))
    return model, _settings_for(model, EvalSettings.from_dict(stored))
