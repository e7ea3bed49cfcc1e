"""Reading weights safely (no pickled code) and loading them all-or-nothing.

Accepted: an official release checkpoint (`checkpoint_ema_best.pt`), a raw state dict or one under a
`state_dict` / `model` / `ema` key (`module.` prefixes from DDP tolerated), timm weights, and `.safetensors`.
"""
from __future__ import annotations

import logging
import os
import pickle
import re
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import torch
from torch import nn

from . import convert

log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or does not fit the model."""


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, in their own key layout (nothing renamed yet)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path}: not a readable .safetensors file ({e})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        reason = re.search(r"Unsupported global: GLOBAL [\w.]+", str(e))
        if reason is None:  # not a pickle at all
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_first_line(e)})") from None
        raise CheckpointError(f"{path}: refused, the file holds Python objects that weights_only loading "
                              f"does not execute ({reason[0]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_first_line(e)})") from None
    return unwrap(obj, str(path))


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def unwrap(obj: object, where: str = "checkpoint") -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("ema", "state_dict", "model"):  # EMA first: the official figures are EMA weights
            if isinstance(obj.get(key), dict):
                return unwrap(obj[key], where)
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors and len(tensors) == len(obj):
            return {k.removeprefix("module."): v for k, v in tensors.items()}
    raise CheckpointError(f"{where}: no state dict found (expected tensors, or one under 'state_dict'/'model')")


def load_state_dict_strict(model: nn.Module, state: dict[str, torch.Tensor], *, name: str = "model",
                           skip_prefixes: tuple[str, ...] = ()) -> None:
    """Load every tensor or none: missing, unexpected and mis-shaped keys are one error that names them."""
    state = convert.to_ours(state)
    own = model.state_dict()
    if skip_prefixes:
        state = {k: v for k, v in state.items() if not k.startswith(skip_prefixes)}
        own = {k: v for k, v in own.items() if not k.startswith(skip_prefixes)}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shaped = [f"{k} {list(state[k].shape)} vs {list(own[k].shape)}" for k in own
              if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shaped:
        parts = [f"{len(v)} {what} ({', '.join(v[:3])}{', ...' if len(v) > 3 else ''})"
                 for what, v in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shaped)) if v]
        raise CheckpointError(f"checkpoint does not fit {name}: " + "; ".join(parts))
    model.load_state_dict(state, strict=not skip_prefixes)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Write through `write(file)` to a temporary file in the same folder, fsync, then rename: never a half-written
    file, and an existing one stays until the new one is complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save(obj: object, path: str | os.PathLike) -> None:
    """torch.save, atomically (see `atomic_write`)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def save_safetensors(model: nn.Module, path: str | os.PathLike) -> None:
    """Write a model's weights as .safetensors (atomically)."""
    from safetensors.torch import save_file
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save_file(state, str(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
