"""Tasks: what differs between classification, segmentation and detection (data, loss, metrics, prediction).

See `base.Task` for the contract the training engine and the `eval` / `predict` commands rely on.
"""
from __future__ import annotations

import importlib

from .base import Task
from .settings import EvalSettings, evaluated_identity

TASK_NAMES = ("classification", "segmentation", "detection")


def get_task(name: str) -> Task:
    """The task object for `model.task` ('classification', 'segmentation' or 'detection'), imported lazily."""
    if name not in TASK_NAMES:
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(TASK_NAMES)}")
    task = importlib.import_module(f".{name}", __name__).TASK
    return task() if isinstance(task, type) else task


__all__ = ["TASK_NAMES", "EvalSettings", "Task", "evaluated_identity", "get_task"]
