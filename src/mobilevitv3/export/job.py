"""What every export format's writer and runtime adapter share: the job description, torch.export with the
dynamic dims, and small helpers. `write(job, path)` writes the file; `open(path, threads=None)` is the one adapter
of its runtime: an `Opened` whose `run(x)` gives the file's outputs for an input batch as a list of tensors (None
where the runtime cannot run on this machine: CoreML predicts on macOS only, where its spec is checked instead).
Every caller -- export's check, quantize, optimize, bench and the runtime models of eval/predict -- opens a file
through these adapters.
"""
from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

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
class Opened:
    """An exported file opened in its runtime."""
    run: Run | None             # batch [B, 3, H, W] -> the file's outputs; None: this machine cannot run it
    runtime: str                # what runs it, with its version
    metadata: dict[str, str]    # what the file carries (deploy_metadata), {} for a file without any


class Opener(Protocol):
    def __call__(self, path: Path, *, threads: int | None = None) -> Opened: ...


@dataclass(frozen=True)
class Backend:
    write: Callable[[Job, Path], None]
    open: Opener


def package_version(name: str) -> str:
    try:
        return f"{name} {importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return name


def flatten(out) -> list[Tensor]:
    """A model's output (a tensor, or nested tuples/lists of them) as the flat list of tensors a runtime gives."""
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
