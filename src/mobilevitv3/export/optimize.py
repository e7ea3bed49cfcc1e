"""`optimize(model)`: the fastest float32 CPU inference path the library gives, as one call.

The winner on this project's CPU (benchmarks/fast_paths.py, BENCHMARKS.md) is onnxruntime on the package's own ONNX
export (BatchNorm folded, one image size, any batch): its graph optimiser runs the convolutions in a blocked channel
layout with bias and residual adds fused, SiLU as one kernel, and LayerNorm / attention scaling fused, in a few
seconds of set-up. `backend="inductor"` (torch.compile with weight freezing: conv + SiLU fused by oneDNN) comes
close but compiles for a minute on two cores; `backend="eager"` (BatchNorm folded, channels-last) is the plain
PyTorch path. The result is an `nn.Module` taking the NCHW float32 input of `model` and giving its outputs (within
1e-4).
"""
from __future__ import annotations

import logging
import os
import tempfile
from typing import Literal

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..layers import fuse
from .job import Run

log = logging.getLogger(__name__)
Backend = Literal["onnxruntime", "inductor", "eager"]
BACKENDS = ("onnxruntime", "inductor", "eager")


class OptimizedModel(nn.Module):
    """Inference-only wrapper: `forward(x)` with x [B, 3, H, W] float32 (any memory layout), outputs like the
    original model's (a tensor, or a tuple for detection). `backend` names what runs it."""

    def __init__(self, inner: nn.Module | None, backend: str, identity, image_size: tuple[int, int] | None,
                 *, run: Run | None = None, tuple_out: bool = False) -> None:
        super().__init__()
        self.inner, self.backend, self.identity, self.image_size = inner, backend, identity, image_size
        self._run, self._tuple = run, tuple_out

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, ...]:
        if self._run is not None:
            return self._run_exported(x)
        with torch.no_grad():
            if self.backend == "eager":
                return self.inner(x.contiguous(memory_format=torch.channels_last))
            import torch._inductor.config as inductor_config
            with inductor_config.patch(freezing=True):  # scoped: recompiles (a new shape) also freeze weights
                return self.inner(x.contiguous(memory_format=torch.channels_last))

    def _run_exported(self, x: Tensor) -> Tensor | tuple[Tensor, ...]:
        if tuple(x.shape[-2:]) != self.image_size:
            raise ValueError(f"this optimized model was built for {self.image_size[0]}x{self.image_size[1]} "
                             f"inputs, got {x.shape[-2]}x{x.shape[-1]}: optimize(model, image_size=...) again")
        outs = tuple(self._run(x.detach().cpu().float().contiguous()))
        return outs if self._tuple else outs[0]


def optimize(model: nn.Module, *, backend: Backend = "onnxruntime", image_size: int | tuple[int, int] | None = None,
             threads: int | None = None) -> OptimizedModel:
    """The fastest float32 CPU inference module for `model` (any `create_model` result, eval mode is implied).

    `image_size`: the input size the graph is specialised for (default: the tag's evaluation size, else 256);
    onnxruntime then accepts any batch at that size. `threads`: onnxruntime intra-op threads (default: torch's count;
    the torch backends use torch's setting). The original model is left untouched."""
    if backend not in BACKENDS:
        raise UserError(f"unknown optimize backend {backend!r}; choose from {', '.join(BACKENDS)}")
    from .api import _image_size, default_image_size
    size = _image_size(image_size if image_size is not None else default_image_size(model))
    tuple_out = getattr(model, "identity", None) is not None and model.identity.task == "detection"
    identity = getattr(model, "identity", None)
    if backend == "onnxruntime":
        return OptimizedModel(None, backend, identity, size, run=_onnx_run(model, size, threads),
                              tuple_out=tuple_out)
    fast = fuse(model).to(memory_format=torch.channels_last).requires_grad_(False)
    if backend == "eager":
        return OptimizedModel(fast, backend, identity, None)
    compiled = OptimizedModel(torch.compile(fast, fullgraph=True, dynamic=False), backend, identity, None)
    compiled(torch.rand(1, 3, *size))   # compile now, not on the user's first call
    return compiled


def _onnx_run(model: nn.Module, size: tuple[int, int], threads: int | None) -> Run:
    """The package's ONNX export (BatchNorm folded, dynamic batch, checked against eager) in onnxruntime."""
    from .api import export
    from .onnx import open_onnx
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        export(model, "onnx", path, image_size=size, dynamic_batch=True, fuse=True)
        run = open_onnx(path, threads=threads).run
    log.info("optimize: onnxruntime session on the ONNX export (%dx%d, %s threads)", *size,
             threads or torch.get_num_threads())
    return run
