"""Which job a `train` command runs: a new one (defaults < recipe < flags), or the job its run folder holds.

With `--resume`, or in a torchrun restart of the job that owns the folder (TORCHELASTIC_RESTART_COUNT > 0 and the
folder's recorded run id is TORCHELASTIC_RUN_ID), the base is the run's own config -- last.pt's, or config.yaml's
for a run stopped before its first checkpoint -- and flags given now override it (`--epochs` to extend a run);
the trainer then refuses what it cannot continue (train/run_folder.py `check_resume`).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from .checkpoints import saved_config
from .config import TrainConfig, resolve
from .run_folder import restart_owns
from .runlog import read_config

log = logging.getLogger(__name__)


def _is_true(value: Any) -> bool:
    return str(value).lower() in ("true", "1", "yes")


def saved_job(out: Path) -> dict[str, Any] | None:
    """The config of the run in `out`: last.pt's, else config.yaml's (written when the run started); None if none."""
    config, _ = saved_config(out / "last.pt")
    if config is None and (out / "config.yaml").is_file():
        config = read_config(out / "config.yaml")
    return config


def resolve_job(recipe: str | None, overrides: dict[str, Any]) -> TrainConfig:
    """The config to train: every value checked before anything is written."""
    overrides = dict(overrides)
    out = Path(overrides.get("out") or resolve(recipe, {k: v for k, v in overrides.items() if k != "resume"}).out)
    if not _is_true(overrides.get("resume", False)):
        if not restart_owns(out):
            return resolve(recipe, overrides)
        log.info("torchrun restart %s of job %s: continuing its run in %s",
                 os.environ.get("TORCHELASTIC_RESTART_COUNT"), os.environ.get("TORCHELASTIC_RUN_ID"), out)
        overrides["resume"] = True
    base = saved_job(out)
    return resolve(None if base else recipe, overrides, base=base)
