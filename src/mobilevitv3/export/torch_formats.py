"""TorchScript (traced) and torch.export ExportedProgram (.pt2) files, with the deploy metadata as an extra file."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .job import Job, Run, flatten, torch_export


def _extra_files(job: Job) -> dict[str, str]:
    return {"mobilevitv3.json": json.dumps(job.metadata, indent=1)}


def write_torchscript(job: Job, path: Path) -> None:
    # Tracing records one spatial size: the odd-map branches of the blocks are Python control flow.
    traced = torch.jit.trace(job.model, job.example, check_trace=False)
    job.exporter = "torch.jit.trace"
    torch.jit.save(traced, str(path), _extra_files=_extra_files(job))


def load_torchscript(job: Job, path: Path) -> tuple[str, Run]:
    module = torch.jit.load(str(path), map_location="cpu")
    return f"torch.jit {torch.__version__}", lambda x: flatten(module(x))


def write_exported_program(job: Job, path: Path) -> None:
    torch.export.save(torch_export(job), str(path), extra_files=_extra_files(job))
    job.exporter = "torch.export"


def load_exported_program(job: Job, path: Path) -> tuple[str, Run]:
    module = torch.export.load(str(path)).module()
    return f"torch.export {torch.__version__}", lambda x: flatten(module(x))
