"""The one exception type for bad user input that the CLI turns into a one-line message (exit code 2), and the
checks of user-given values that every layer shares (files, devices)."""
from __future__ import annotations

import os
from pathlib import Path

import torch


class UserError(ValueError):
    """Bad input from the user (path, file, shape, option): the message is shown as is, without a traceback.
    A ValueError, so Python callers can catch it as one; the CLI shows only this class (and its subclasses) as a
    one-line error: any other exception is a bug and keeps its traceback."""


def existing_file(path: str | os.PathLike, what: str = "file", *, error: type[UserError] = UserError) -> Path:
    """`path` as a Path when it names a file; else `error` saying it is a folder or missing (`what` names it)."""
    path = Path(path)
    if path.is_dir():
        raise error(f"{what} {path} is a folder, not a file")
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    return path


def device_from(spec: str) -> torch.device:
    """'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N', checked against this machine."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError):
        raise UserError(f"unknown device {spec!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"device {spec!r} is not supported: use auto, cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {spec}: CUDA is not available on this machine (use --device cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) here")
    return dev
