"""Writing files atomically: a temporary file in the same folder, fsync, rename. A kill at any moment leaves the old
file or the new one, never half of one; the temporary files of a killed writer are named `.NAME.*.tmp`."""
from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import torch
from torch import nn

from ..errors import UserError


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
        os.chmod(tmp, 0o666 & ~_umask())   # mkstemp makes 0600; a written file follows the umask like open() does
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        raise_if_no_space(e, path)
        raise


def raise_if_no_space(error: BaseException, path: Path) -> None:
    """A full disk as one line (torch.save reports it as "unexpected pos" with the OS error deep in the chain)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if (isinstance(error, OSError) and error.errno == errno.ENOSPC) or "No space left on device" in str(error):
            raise UserError(f"cannot write {path}: No space left on device (what was on disk before is kept; free "
                            f"space and run again, with --resume for a training run)") from None
        error = error.__cause__ or error.__context__


def _umask() -> int:
    mask = os.umask(0)   # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a killed writer left in `folder` (call it only while holding the folder)."""
    stale = [p for p in Path(folder).glob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def atomic_save(obj: object, path: str | os.PathLike) -> None:
    """torch.save, atomically (see `atomic_write`)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def save_safetensors(model: nn.Module, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Write a model's weights as .safetensors (atomically), with string `metadata` in the header."""
    from safetensors.torch import save
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, lambda f: f.write(save(state, metadata=metadata)))
