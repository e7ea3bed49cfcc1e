"""TorchScript (traced) and torch.export ExportedProgram (.pt2) files, with the deploy metadata as an extra file,
and their runtime adapters (torch itself runs both)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .job import Job, Opened, flatten, torch_export

EXTRA_FILE = "mobilevitv3.json"


def _extra_files(job: Job) -> dict[str, str]:
    return {EXTRA_FILE: json.dumps(job.metadata, indent=1)}


def write_torchscript(job: Job, path: Path) -> None:
    # Tracing records one spatial size: the odd-map branches of the blocks are Python control flow.
    traced = torch.jit.trace(job.model, job.example, check_trace=False)
    job.exporter = "torch.jit.trace"
    torch.jit.save(traced, str(path), _extra_files=_extra_files(job))


def open_torchscript(path: Path, *, threads: int | None = None) -> Opened:
    """The traced module on CPU; torch's own thread setting applies (`threads` is not torch's to change here)."""
    extra = {EXTRA_FILE: ""}
    module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return Opened(lambda x: flatten(module(x)), f"torch.jit {torch.__version__}", _metadata(extra))


def write_exported_program(job: Job, path: Path) -> None:
    torch.export.save(torch_export(job), str(path), extra_files=_extra_files(job))
    job.exporter = "torch.export"


def open_exported_program(path: Path, *, threads: int | None = None) -> Opened:
    """The program's module on CPU, like `open_torchscript`."""
    extra = {EXTRA_FILE: ""}
    module = torch.export.load(str(path), extra_files=extra).module()
    return Opened(lambda x: flatten(module(x)), f"torch.export {torch.__version__}", _metadata(extra))


def _metadata(extra: dict[str, str | bytes]) -> dict[str, str]:
    text = extra.get(EXTRA_FILE) or ""
    return json.loads(text) if text else {}
