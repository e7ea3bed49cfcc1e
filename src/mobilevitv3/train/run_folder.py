"""The run folder: one writer at a time (an exclusive lock held for the whole run), leftovers of a killed writer
removed on start, one folder seen by every process, the torchrun job that owns it, and a resume that refuses, in
one line, what it cannot continue (another model, class count or data set; a mid-epoch stop on another world size).
"""
from __future__ import annotations

import fcntl
import logging
import os
import secrets
import socket
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..weights import atomic_write, remove_stale_temps
from . import distributed

log = logging.getLogger(__name__)
LOCK = ".lock"
TOKEN = ".rank0"            # check_shared
OWNER = ".torchrun_job"     # write_owner / restart_owns


class RunFolder:
    """`with RunFolder(out):` holds `out/.lock` (flock: released by the kernel however the process ends)."""

    def __init__(self, out: str | os.PathLike, *, enabled: bool = True) -> None:
        self.out, self.enabled, self._fd = Path(out), enabled, None

    def __enter__(self) -> RunFolder:
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


# What a run is: resuming with another value trains another model (refused at any point).
JOB_FIELDS = ("model", "task", "num_classes", "qat", "model_kwargs")
# What orders the rest of an epoch: a run stopped mid-epoch continues only with the same values.
EPOCH_FIELDS = ("batch_size", "accum_steps", "image_size", "seed", "sampler", "sampler_min_size", "sampler_max_size",
                "sampler_scales", "sampler_check_scale")


def _flag(name: str, value: Any) -> str:
    return f"--{name.replace('_', '-')} {value}"


def check_resume(saved: dict[str, Any], *, config: dict[str, Any], data: dict[str, Any] | None, world: int) -> None:
    """One line naming the first thing that keeps the run in `saved` (last.pt, or {"config": config.yaml} before
    the first checkpoint) from being continued by `config` on `world` processes with `data`."""
    before = saved.get("config") or {}
    for name in JOB_FIELDS:
        old, new = before.get(name), config.get(name)
        if old is not None and new is not None and old != new:
            raise UserError(f"--resume: the run was made with {_flag(name, old)}, not {_flag(name, new)}; resume "
                            f"it as it was or start a new --out")
    if saved.get("step"):   # mid-epoch: the rest of the epoch was fixed by these
        epoch, saved_world = saved["epoch"] + 1, saved.get("world", 1)
        if saved_world not in (None, world):
            raise UserError(f"--resume: last.pt was saved in the middle of epoch {epoch} by {saved_world} "
                            f"process(es); resume it on {saved_world} (each process's sample order and random state "
                            f"are its own), not {world}")
        for name in EPOCH_FIELDS:
            if before.get(name, config[name]) != config[name]:
                raise UserError(f"--resume: last.pt was saved in the middle of epoch {epoch} with "
                                f"{_flag(name, before[name])}; the rest of the epoch needs it (change it after "
                                f"an epoch boundary)")
    old = saved.get("data_fingerprint")
    if old is None or data is None:
        return
    for key, what in (("classes", "class names"), ("train_files", "training files"), ("val_files", "validation files")):
        if old.get(key) != data.get(key):
            raise UserError(f"--resume: the data set differs from the run's ({what}: {_shown(old.get(key))} before, "
                            f"{_shown(data.get(key))} now); resume with the same --data or start a new --out")


def check_shared(out: Path, ctx: distributed.Dist) -> None:
    """Every process sees the folder rank 0 writes (one shared filesystem, not a node-local disk), checked before
    training: rank 0 writes a fresh token, the others read it back. Raised on every rank together."""
    if not ctx.enabled:
        return
    token = secrets.token_hex(16) if ctx.main else None
    if ctx.main:
        atomic_write(out / TOKEN, lambda f: f.write(token.encode()))
    token = distributed.broadcast(token, ctx=ctx)   # after rank 0's write
    try:
        seen = (out / TOKEN).read_text()
    except OSError:
        seen = None
    views = distributed.gather((seen == token, socket.gethostname()), ctx=ctx)
    blind = [f"{rank} ({host})" for rank, (ok, host) in enumerate(views) if not ok]
    if blind:
        raise UserError(f"--out {out} is not one folder for every process: rank(s) {', '.join(blind)} do not see "
                        f"what rank 0 ({views[0][1]}) writes there; give a path on a filesystem that every node "
                        f"shares")


def write_owner(out: Path) -> None:
    """Record which torchrun job writes the folder, so that its restarts continue it (`restart_owns`)."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    if run_id:
        atomic_write(out / OWNER, lambda f: f.write(run_id.encode()))


def restart_owns(out: Path) -> bool:
    """True in a torchrun restart (TORCHELASTIC_RESTART_COUNT > 0) of the job whose run is in `out`."""
    if int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) < 1:
        return False
    try:
        return (out / OWNER).read_text() == os.environ.get("TORCHELASTIC_RUN_ID")
    except OSError:
        return False


def _shown(value: Any) -> Any:
    """A class list as its length and first names; anything else as it is."""
    return f"{len(value)} classes ({', '.join(map(str, value[:3]))}...)" if isinstance(value, list) else value
