"""Reading weights safely: `torch.load(weights_only=True)` (a pickle carrying code is refused, never run) or
safetensors, with one clear error for a missing, corrupt or foreign file.

Accepted: an official release checkpoint (`checkpoint_ema_best.pt`: a raw state dict), a state dict or one under
`model` / `state_dict` / `ema` (`module.` prefixes from DDP tolerated), timm weights, `.safetensors`, and this
project's own files, which also carry the model's identity (and, from `train`, the resolved config).
Which copy a file with both raw and EMA weights gives is one rule: the raw `model` copy unless `copy="ema"`.
"""
from __future__ import annotations

import json
import os
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from ..errors import UserError, existing_file

IDENTITY_KEY = "mobilevitv3.identity"     # safetensors metadata key holding the identity as JSON


class CheckpointError(UserError):
    """A checkpoint that cannot be read, or does not fit the model."""


@dataclass(frozen=True)
class Weights:
    state: dict[str, torch.Tensor]
    path: str
    copy: Literal["model", "ema", "weights"] = "weights"   # 'weights': the file holds one copy only
    identity: dict[str, Any] | None = None                # what model the file holds (our files)
    config: dict[str, Any] | None = None                  # the resolved TrainConfig (our training checkpoints)
    extra: dict[str, Any] | None = None                   # everything else a training checkpoint holds


def check_file(path: str | os.PathLike, what: str = "weights file") -> Path:
    return existing_file(path, what, error=CheckpointError)


EXPORTED = {".onnx": "an ONNX model", ".pte": "an ExecuTorch program", ".tflite": "a TFLite model",
            ".mlpackage": "a CoreML package"}


def exported_kind(path: Path) -> str | None:
    """What kind of exported (runnable, not loadable) model file `path` is, or None for anything else."""
    if path.suffix in EXPORTED:
        return EXPORTED[path.suffix]
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    if any("/code/" in n for n in names) and any(n.endswith("/constants.pkl") for n in names):
        return "a TorchScript program"
    if any(n.endswith("/models/model.json") for n in names):
        return "a torch.export program"
    return None


def load_pickle(path: Path) -> Any:
    """torch.load(weights_only=True) with our own one-line errors (torch's refusal text advises disabling the
    safety check; ours does not)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if found is None:
            raise _unreadable(path, e) from None
        raise CheckpointError(f"{path}: refused: the file holds Python code or objects ({found[1]}) that safe "
                              f"loading never runs; only tensors and plain types are accepted") from None
    except (RuntimeError, EOFError, IndexError, zipfile.BadZipFile, OSError, ValueError, KeyError) as e:
        raise _unreadable(path, e) from None


def _unreadable(path: Path, e: BaseException) -> CheckpointError:
    """The one line for a file torch cannot read safely: what it is when it is an exported model, else why."""
    if (kind := exported_kind(path)) is not None:
        return CheckpointError(f"{path} is {kind} (an exported model), not a checkpoint: weights load from "
                               f"checkpoints (.pt/.pth/.safetensors); `eval`/`predict` also run .onnx and .pte "
                               f"files")
    return CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_reason(e)})")


def read_weights(path: str | os.PathLike, *, copy: Literal["model", "ema"] | None = None) -> Weights:
    """The tensors of a weights file in their own key layout (nothing renamed yet), with what the file says of
    itself. `copy`: 'model' (raw, the default) or 'ema' for files holding both."""
    if copy not in (None, "model", "ema"):
        raise UserError(f"copy must be 'model' (the raw weights) or 'ema', got {copy!r}")
    path = check_file(path)
    if path.suffix == ".safetensors":
        return _read_safetensors(path, copy)
    obj = load_pickle(path)
    state, chosen = _select(obj, copy, str(path))
    meta = obj if state is not obj else {}          # a wrapper dict: its other entries describe the weights
    known = ("model", "ema", "state_dict", "identity", "config")
    return Weights(_tensors(state, str(path)), str(path), chosen, meta.get("identity"), meta.get("config"),
                   {k: v for k, v in meta.items() if k not in known} or None)


def _read_safetensors(path: Path, copy: str | None) -> Weights:
    from safetensors import SafetensorError, safe_open
    if copy == "ema":
        raise CheckpointError(f"{path}: a .safetensors file holds one copy of the weights, no separate EMA copy")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable .safetensors file ({_first_line(e)})") from None
    identity = json.loads(meta[IDENTITY_KEY]) if IDENTITY_KEY in meta else None
    return Weights(state, str(path), "weights", identity)


def _select(obj: Any, copy: str | None, where: str) -> tuple[Any, str]:
    if not isinstance(obj, dict):
        raise CheckpointError(f"{where}: no state dict found (expected a mapping of tensors)")
    if copy == "ema":
        if not isinstance(obj.get("ema"), dict):
            raise CheckpointError(f"{where}: holds no EMA weights (choose the raw copy)")
        return obj["ema"], "ema"
    for key in ("model", "state_dict"):
        if isinstance(obj.get(key), dict):
            return obj[key], "model" if isinstance(obj.get("ema"), dict) else "weights"
    if isinstance(obj.get("ema"), dict):
        return obj["ema"], "ema"
    return obj, "weights"


def _tensors(state: Any, where: str) -> dict[str, torch.Tensor]:
    if isinstance(state, dict):
        tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
        if tensors and len(tensors) == len(state):
            return {k.removeprefix("module."): v for k, v in tensors.items()}
    raise CheckpointError(f"{where}: no state dict found (expected tensors, or one under 'model'/'state_dict')")


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _reason(e: BaseException) -> str:
    """torch's reason without its advice to load with weights_only=False (the unsafe path)."""
    text = str(e)
    if "weights_only" not in text:
        return _first_line(e)
    found = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    return found[1].strip() if found else "not a tensor archive"
