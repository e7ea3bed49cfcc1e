"""What one benchmark worker times: an implementation (ours or timm's model of the same architecture) in one runtime
(eager, compiled, the library's optimized path, onnxruntime, ExecuTorch XNNPACK, the INT8 ONNX file), built inside
the worker process.

`build(spec)` returns a `Built`: `infer(batch)` / `train(batch)` give zero-argument calls on cached inputs, so the
timed loop measures the call alone. Both implementations get the same input layout and the same export route.
"""
from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from ..errors import UserError

Impl = Literal["ours", "timm"]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Runtimes, and which implementations have them (timm has no BatchNorm folding / optimize step of its own).
RUNTIMES: dict[str, tuple[str, ...]] = {
    "eager": ("ours", "timm"), "compiled": ("ours", "timm"), "optimized": ("ours",),
    "onnxruntime": ("ours", "timm"), "executorch": ("ours", "timm"),
    "int8": ("ours",),   # the package's INT8 ONNX file (export.quantize) in onnxruntime
    "openvino": ("ours",),   # the package's OpenVINO IR (from its ONNX export) in OpenVINO's CPU plugin, f32
    "openvino-bf16": ("ours",),   # the same IR run in bf16 (optimize's bf16 path; the CPU needs native bf16)
}
EXPORT_FORMAT = {"onnxruntime": "onnx", "openvino-bf16": "openvino"}   # runtime -> export format, where they differ
TORCH_RUNTIMES = ("eager", "compiled", "optimized")
# timm implements these architectures under the same names (its v2 widths: 050 ... 200).
TIMM_NAMES = ("mobilevit_xxs", "mobilevit_xs", "mobilevit_s",
              *(f"mobilevitv2_{w}" for w in ("050", "075", "100", "125", "150", "175", "200")))


@dataclass(frozen=True)
class Spec:
    """One worker's job: `name` is our architecture; `impl` says whose model of it is built."""
    name: str
    impl: Impl = "ours"
    runtime: str = "eager"
    image_size: int = 256
    batch_sizes: tuple[int, ...] = (1,)  # inputs made ahead (the exported graphs take any batch)
    channels_last: bool = False          # model and input, either implementation
    fuse: bool = False                   # fold BatchNorm first (ours only)
    threads: int = 1
    device: str = "cpu"
    dtype: str = "fp32"
    train: bool = False                  # also build a training step (torch runtimes)
    backend: str | None = None           # runtime "optimized": optimize()'s backend (None: its default)

    @property
    def label(self) -> str:
        return f"{self.impl}/{self.runtime}" + (f"[{self.backend}]" if self.backend else "")


@dataclass
class Built:
    infer: Callable[[int], Callable[[], object]]
    train: Callable[[int], Callable[[], object]] | None
    params: int
    runtime_version: str
    torch_ops: bool                      # whether torch ops run it (peak memory is measured for those)
    info: dict = field(default_factory=dict)


def timm_name(name: str) -> str | None:
    """timm's name for the same classification architecture, None where timm has none."""
    arch = name.partition(".")[0]
    return arch if arch in TIMM_NAMES else None


def make_model(spec: Spec) -> nn.Module:
    if spec.impl == "ours":
        from ..models import create_model
        return create_model(spec.name).eval()
    import timm
    reference = timm_name(spec.name)
    if reference is None:
        raise UserError(f"timm has no implementation of {spec.name}")
    return timm.create_model(reference).eval()


def _image(spec: Spec, batch: int) -> Tensor:
    x = torch.randn(batch, 3, spec.image_size, spec.image_size, generator=torch.Generator().manual_seed(batch))
    x = x.to(spec.device)
    return x.contiguous(memory_format=torch.channels_last) if spec.channels_last else x


def _autocast(spec: Spec):
    return torch.autocast(spec.device, dtype=DTYPES[spec.dtype]) if spec.dtype != "fp32" else nullcontext()


def _cached(make: Callable[[int], object], step: Callable[[object], object]) -> Callable[[int], Callable[[], object]]:
    inputs: dict[int, object] = {}

    def for_batch(batch: int) -> Callable[[], object]:
        if batch not in inputs:
            inputs[batch] = make(batch)
        x = inputs[batch]
        return lambda: step(x)
    return for_batch


def build(spec: Spec) -> Built:
    if spec.impl not in RUNTIMES.get(spec.runtime, ()):
        raise UserError(f"runtime {spec.runtime!r} is not available for {spec.impl}")
    model = make_model(spec)
    params = sum(p.numel() for p in model.parameters())
    train = _train_step(model, spec) if spec.train and spec.runtime in ("eager", "compiled") else None
    if spec.fuse and spec.impl == "ours" and spec.runtime != "optimized":
        from ..layers import fuse
        model = fuse(model)
    if spec.runtime in ("onnxruntime", "executorch", "int8", "openvino", "openvino-bf16"):
        run, version, graph_batch = _exported(model, spec)
        if graph_batch == "static":   # a fixed-batch file runs a larger batch in slices, as `eval` runs it
            run = _in_slices(run, 1 if spec.runtime == "int8" else spec.batch_sizes[0])
        return Built(_cached(lambda b: _image(spec, b).cpu(), run), train, params, version, False,
                     {"graph_batch": graph_batch})
    model = model.to(spec.device)
    if spec.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if spec.runtime == "compiled":  # ours must compile to one graph; a reference model may break its graph
        model = torch.compile(model, fullgraph=spec.impl == "ours", dynamic=False)
    elif spec.runtime == "optimized":
        from ..export.optimize import optimize
        model = optimize(model, image_size=spec.image_size, threads=spec.threads,
                         **({"backend": spec.backend} if spec.backend else {}))

    def step(x: Tensor) -> object:
        with torch.inference_mode(), _autocast(spec):
            return model(x)
    return Built(_cached(lambda b: _image(spec, b), step), train, params, f"torch {torch.__version__}", True,
                 {"backend": getattr(model, "backend", spec.runtime)})


def _train_step(model: nn.Module, spec: Spec) -> Callable[[int], Callable[[], object]]:
    """Forward + backward + SGD step on a train-mode copy (the output's mean as the loss: any output structure)."""
    model = copy.deepcopy(model).to(spec.device).train()
    if spec.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    forward = torch.compile(model, fullgraph=spec.impl == "ours", dynamic=False) if spec.runtime == "compiled" \
        else model

    def step(x: Tensor) -> None:
        with _autocast(spec):
            out = forward(x)
            outs = out if isinstance(out, (tuple, list)) else (out,)
            loss = sum(o.float().mean() for o in outs)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return _cached(lambda b: _image(spec, max(2, b)), step)  # train-mode BatchNorm needs two samples


def _in_slices(run: Callable[[Tensor], list[Tensor]], size: int) -> Callable[[Tensor], list[Tensor]]:
    """`run` of a graph with a fixed batch `size` over any multiple of it (the quantized ONNX file: batch 1)."""
    def sliced(x: Tensor) -> list[Tensor]:
        if len(x) == size:
            return run(x)
        if len(x) % size:
            raise UserError(f"this graph takes batches of {size}; {len(x)} is not a multiple")
        return [torch.cat(parts) for parts in zip(*(run(x[i:i + size]) for i in range(0, len(x), size)))]
    return sliced


def _exported(model: nn.Module, spec: Spec) -> tuple[Callable[[Tensor], list[Tensor]], str, str]:
    """The model exported through the package's export path, opened by the runtime's one adapter
    (`export.open_exported`); (run(x), runtime version, the graph's batch: "dynamic" or "static").

    Ours goes through `export()` (the user's route, checked against eager); timm's model has no identity, so it goes
    through the same writer (`export.onnx.write_onnx` / `export.edge.write_executorch`) with the same settings."""
    if spec.device != "cpu" or spec.dtype != "fp32":
        raise UserError(f"--runtime {spec.runtime} times the float32 CPU graph: drop --device / --dtype")
    from ..export import open_exported
    with tempfile.TemporaryDirectory() as tmp:
        fmt = EXPORT_FORMAT.get(spec.runtime, spec.runtime)
        path = os.path.join(tmp, {"executorch": "model.pte", "openvino": "model.xml"}.get(fmt, "model.onnx"))
        if spec.runtime == "int8":   # latency only: random calibration images, the SNR check left out
            from ..export.quantize import quantize
            quantize(model, "onnx", path, calibration=list(torch.rand(8, 3, spec.image_size, spec.image_size)),
                     image_size=spec.image_size, verify=False)
        elif spec.impl == "ours":
            from ..export import export
            export(model, fmt, path,
                   image_size=spec.image_size, **_batch(spec))
        else:
            _write_reference(model, spec, path)
        if spec.runtime == "openvino-bf16":
            from ..export.openvino import open_openvino
            opened = open_openvino(path, threads=spec.threads, precision="bf16")
        else:
            opened = open_exported(path, threads=spec.threads)   # the runtime's pool: one thread per core otherwise
        batch = opened.metadata.get("batch") or ("dynamic" if _batch(spec)["dynamic_batch"] else "static")
        return opened.run, opened.runtime, batch


def _batch(spec: Spec) -> dict:
    """ONNX graphs take any batch; an XNNPACK program is exported for the first batch size (timm's model does not
    keep a symbolic batch through XNNPACK's delegate), on both sides alike."""
    if spec.runtime == "executorch":
        return {"dynamic_batch": False, "batch_size": spec.batch_sizes[0]}
    return {"dynamic_batch": True}


def _write_reference(model: nn.Module, spec: Spec, path: str) -> None:
    from ..export.job import Job
    dynamic = _batch(spec)["dynamic_batch"]
    example = torch.rand(2 if dynamic else spec.batch_sizes[0], 3, spec.image_size, spec.image_size)
    job = Job(model=model.requires_grad_(False), example=example, input_name="image", output_names=["logits"],
              dynamic_batch=dynamic, size_multiple=0, max_batch=1024, max_size=4096,
              metadata={"model": f"timm {timm_name(spec.name)}", "producer": "timm"})
    if spec.runtime == "onnxruntime":
        from ..export.onnx import write_onnx
        write_onnx(job, Path(path))
    else:
        from ..export.edge import write_executorch
        write_executorch(job, Path(path))
