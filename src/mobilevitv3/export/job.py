"""What every export format's writer and loader share: the job description, torch.export with the dynamic dims,
and small helpers. `write(job, path)` writes the file; `load(job, path)` returns (runtime description, run) where
`run(x)` gives the file's outputs for an input batch as a list of tensors, or None where the runtime cannot run on
this machine (CoreML predicts on macOS only; on Linux its spec is checked instead).
"""
from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn
from torch.export import Dim

Run = Callable[[Tensor], list[Tensor]]


@dataclass
class Job:
    model: nn.Module            # eval mode, deployed dtype (and fused with --fuse)
    example: Tensor             # example batch the exporters trace with
    input_name: str
    output_names: list[str]
    dynamic_batch: bool
    size_multiple: int          # > 0: height and width are symbolic multiples of it
    max_batch: int
    max_size: int
    metadata: dict[str, str]
    exporter: str = ""          # set by the writer: the tool (and route) that produced the file


@dataclass(frozen=True)
class Backend:
    write: Callable[[Job, Path], None]
    load: Callable[[Job, Path], tuple[str, Run | None]]


def package_version(name: str) -> str:
    try:
        return f"{name} {importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return name


def flatten(out) -> list[Tensor]:
    return [out] if isinstance(out, Tensor) else [t for o in out for t in flatten(o)]


def dynamic_shapes(job: Job) -> tuple[dict, ...] | None:
    """torch.export dims: the batch, and height/width as multiples of the size step (no odd map in any block)."""
    dims = {}
    if job.dynamic_batch:
        dims[0] = Dim("batch", min=1, max=job.max_batch)
    if job.size_multiple:
        top = job.max_size // job.size_multiple
        dims[2] = job.size_multiple * Dim("height_steps", min=1, max=top)
        dims[3] = job.size_multiple * Dim("width_steps", min=1, max=top)
    return (dims,) if dims else None


def torch_export(job: Job) -> torch.export.ExportedProgram:
    return torch.export.export(job.model, (job.example,), dynamic_shapes=dynamic_shapes(job), strict=False)
