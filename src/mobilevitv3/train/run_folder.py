"""The run folder: one writer at a time (an exclusive lock held for the whole run), leftovers of a killed writer
removed on start, and a resume that refuses, in one line, a run of another model, class count or data set.
"""
from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..weights import remove_stale_temps

log = logging.getLogger(__name__)
LOCK = ".lock"


class RunFolder:
    """`with RunFolder(out):` holds `out/.lock` (flock: released by the kernel however the process ends)."""

    def __init__(self, out: str | os.PathLike, *, enabled: bool = True) -> None:
        self.out, self.enabled, self._fd = Path(out), enabled, None

    def __enter__(self) -> "RunFolder":
        if not self.enabled:
            return self
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"--out {self.out} is a file; give a folder for the run")
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.out / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise UserError(f"cannot write the run folder {self.out}: {e.strerror or e}") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(self._fd, 64).decode(errors="replace").strip() or "another process"
            os.close(self._fd)
            self._fd = None
            raise UserError(f"{self.out} is being written by another run (pid {holder}); wait for it to finish or "
                            f"choose another --out") from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, str(os.getpid()).encode())
        for stale in remove_stale_temps(self.out):
            log.info("removed %s, left by an interrupted write", stale)
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)   # closing releases the lock; the file stays (unlinking it would race a waiter)
            self._fd = None


def fingerprint(train_set: Any, val_set: Any) -> dict[str, Any]:
    """What identifies the data a run trains on: class names and the number of files per split."""
    classes = getattr(train_set, "classes", None) or getattr(train_set, "class_names", None)
    return {"classes": list(classes) if classes else None, "train_files": len(train_set),
            "val_files": len(val_set)}


def check_resume(saved: dict[str, Any], *, model: str, num_classes: int | None, data: dict[str, Any]) -> None:
    """One line naming the first difference between the saved run and the one being resumed."""
    before = saved.get("config") or {}
    if before.get("model") and before["model"] != model:
        raise UserError(f"--resume: the run was made with --model {before['model']}, not {model}")
    if num_classes is not None and before.get("num_classes") not in (None, num_classes):
        raise UserError(f"--resume: the run trains {before['num_classes']} classes, this data gives {num_classes}")
    old = saved.get("data_fingerprint")
    if old is None:
        return
    for key, what in (("classes", "class names"), ("train_files", "training files"), ("val_files", "validation files")):
        if old.get(key) != data.get(key):
            shown = (lambda v: v if not isinstance(v, list) else f"{len(v)} classes ({', '.join(map(str, v[:3]))}...)")
            raise UserError(f"--resume: the data set differs from the run's ({what}: {shown(old.get(key))} before, "
                            f"{shown(data.get(key))} now); resume with the same --data or start a new --out")
