"""`optimize(model)`: the fastest CPU inference path the library gives on the machine it runs on, as one call.

The winner on this project's CPU (benchmarks/fast_paths.py, BENCHMARKS.md) is onnxruntime on the package's own ONNX
export (BatchNorm folded, one image size, any batch): its graph optimiser runs the convolutions in a blocked channel
layout with bias and residual adds fused, SiLU as one kernel, and LayerNorm / attention scaling fused, in a few
seconds of set-up. `backend="inductor"` (torch.compile with weight freezing: conv + SiLU fused by oneDNN) comes
close but compiles for a minute on two cores; `backend="eager"` (BatchNorm folded, channels-last) is the plain
PyTorch path. The result is an `nn.Module` taking the NCHW float32 input of `model` and giving its outputs (within
1e-4 in fp32).

Precision (onnxruntime backend): where the CPU has native bf16 (`bf16.cpu_has_bf16`), OpenVINO runs the same ONNX
graph in bf16 1.6x faster than onnxruntime fp32 on v3-XXS and v3-S, but slower on v3-0.5 (measured on an
AVX512-BF16 CPU), so `precision="auto"` measures both once per model, size, CPU and versions and caches the choice
(`bf16.py`); "fp32" is the onnxruntime path exactly, "bf16" forces OpenVINO bf16. A bf16 graph is checked against
eager within `BF16_TOLERANCE` of the largest logit.
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
from . import bf16
from .api import _image_size, default_image_size, export
from .job import Run
from .onnx import open_onnx

log = logging.getLogger(__name__)
Backend = Literal["onnxruntime", "inductor", "eager"]
BACKENDS = ("onnxruntime", "inductor", "eager")
Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS = ("auto", "fp32", "bf16")


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
             threads: int | None = None, precision: Precision = "auto") -> OptimizedModel:
    """The fastest CPU inference module for `model` (any `create_model` result, eval mode is implied).

    `image_size`: the input size the graph is specialised for (default: the tag's evaluation size, else 256);
    onnxruntime then accepts any batch at that size. `threads`: onnxruntime / OpenVINO threads (default: torch's
    count; the torch backends use torch's setting). `precision` (onnxruntime backend): "auto" -- fp32 onnxruntime
    or, on a CPU with native bf16, OpenVINO bf16 if it measured faster here (cached); "fp32"; "bf16". The original
    model is left untouched."""
    if backend not in BACKENDS:
        raise UserError(f"unknown optimize backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise UserError(f"unknown optimize precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision != "auto" and backend != "onnxruntime" and precision != "fp32":
        raise UserError(f"precision={precision!r} is for the onnxruntime backend; {backend} runs float32")
    size = _image_size(image_size if image_size is not None else default_image_size(model))
    tuple_out = getattr(model, "identity", None) is not None and model.identity.task == "detection"
    identity = getattr(model, "identity", None)
    if backend == "onnxruntime":
        run, chosen = _onnx_run(model, size, threads, precision)
        return OptimizedModel(None, chosen, identity, size, run=run, tuple_out=tuple_out)
    fast = fuse(model).to(memory_format=torch.channels_last).requires_grad_(False)
    if backend == "eager":
        return OptimizedModel(fast, backend, identity, None)
    compiled = OptimizedModel(torch.compile(fast, fullgraph=True, dynamic=False), backend, identity, None)
    compiled(torch.rand(1, 3, *size))   # compile now, not on the user's first call
    return compiled


def _onnx_run(model: nn.Module, size: tuple[int, int], threads: int | None, precision: str) -> tuple[Run, str]:
    """The package's ONNX export (BatchNorm folded, dynamic batch, checked against eager) in onnxruntime fp32, or
    the same graph in OpenVINO bf16 where `precision` asks for it or "auto" measured it faster; (run, backend)."""
    threads = threads or torch.get_num_threads()
    want_bf16 = precision == "bf16" or (precision == "auto" and bf16.available())
    if precision == "bf16" and not bf16.available():
        raise UserError("precision='bf16' needs a CPU with native bf16 (avx512_bf16 or amx_bf16) and the Python "
                        "package openvino (pip install openvino)")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        export(model, "onnx", path, image_size=size, dynamic_batch=True, fuse=True)
        fp32 = open_onnx(path, threads=threads).run
        if not want_bf16:
            log.info("optimize: onnxruntime fp32 session on the ONNX export (%dx%d, %d threads)", *size, threads)
            return fp32, "onnxruntime"
        fast = bf16.checked_run(model, path, size, threads, strict=precision == "bf16")
    if fast is None:        # auto, and bf16 missed its tolerance: fp32 stays
        return fp32, "onnxruntime"
    if precision == "bf16" or bf16.choose(model, size, threads, {"onnxruntime": fp32, "openvino-bf16": fast}) \
            == "openvino-bf16":
        return fast, "openvino-bf16"
    return fp32, "onnxruntime"
