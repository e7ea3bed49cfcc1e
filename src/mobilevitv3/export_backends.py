"""One writer and one loader per export format; `export.py` validates, stages, checks and reports around them.

`write(job, path)` writes the file; `load(job, path)` returns (runtime description, run) where `run(x)` gives the
outputs of the file for an input batch as a list of tensors, or None where the runtime cannot run on this machine
(CoreML predicts on macOS only; on Linux its spec is checked instead).
"""
from __future__ import annotations

import importlib.metadata
import json
import logging
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn
from torch.export import Dim

log = logging.getLogger(__name__)
Run = Callable[[Tensor], list[Tensor]]
ONNX_OPSET = 17


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


def _flatten(out) -> list[Tensor]:
    return [out] if isinstance(out, Tensor) else [t for o in out for t in _flatten(o)]


def _dynamic_shapes(job: Job) -> tuple[dict, ...] | None:
    """torch.export dims: the batch, and height/width as multiples of the size step (no odd map in any block)."""
    dims = {}
    if job.dynamic_batch:
        dims[0] = Dim("batch", min=1, max=job.max_batch)
    if job.size_multiple:
        top = job.max_size // job.size_multiple
        dims[2] = job.size_multiple * Dim("height_steps", min=1, max=top)
        dims[3] = job.size_multiple * Dim("width_steps", min=1, max=top)
    return (dims,) if dims else None


def _torch_export(job: Job) -> torch.export.ExportedProgram:
    return torch.export.export(job.model, (job.example,), dynamic_shapes=_dynamic_shapes(job), strict=False)


# ONNX: a static spatial size goes through the TorchScript-based exporter, which emits opset 17 natively in well under
# a second. Symbolic sizes, and graphs that exporter cannot express (PSPNet's adaptive pooling into bins that do not
# divide the map), go through the torch.export-based exporter, whose opset-18 graph is rewritten as opset 17.
def _write_onnx(job: Job, path: Path) -> None:
    import onnx
    names = {"input_names": [job.input_name], "output_names": job.output_names}
    proto = None
    if not job.size_multiple:
        axes = {n: {0: "batch"} for n in [job.input_name, *job.output_names]} if job.dynamic_batch else None
        try:
            torch.onnx.export(job.model, (job.example,), str(path), dynamo=False, opset_version=ONNX_OPSET,
                              dynamic_axes=axes, do_constant_folding=True, **names)
            proto, job.exporter = onnx.load(str(path)), "torch.onnx (TorchScript-based)"
        except Exception as e:  # noqa: BLE001 -- any failure of this exporter: the other one is tried
            log.info("TorchScript-based ONNX exporter failed (%s); using the torch.export-based one",
                     str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
    if proto is None:
        from .onnx_opset import downgrade_to_opset17
        program = torch.onnx.export(job.model, (job.example,), dynamo=True, opset_version=18, optimize=True,
                                    dynamic_shapes=_dynamic_shapes(job), **names)
        proto = downgrade_to_opset17(program.model_proto)
        job.exporter = "torch.onnx (torch.export-based, opset 18 rewritten as 17)"
    opsets = {o.domain or "ai.onnx": o.version for o in proto.opset_import}
    if opsets.get("ai.onnx", 0) > ONNX_OPSET:
        raise RuntimeError(f"the graph needs opset {opsets['ai.onnx']}, more than {ONNX_OPSET}")
    folds = sorted({n.op_type for n in proto.graph.node if n.op_type in ("Col2Im", "Im2Col")})
    if folds:  # unfold/fold are reshapes here; a Col2Im node would need opset 18 and is slow on most runtimes
        raise RuntimeError(f"unexpected {', '.join(folds)} nodes in the graph")
    del proto.metadata_props[:]
    for key, value in job.metadata.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = f"{job.metadata['model']} exported by {job.metadata['producer']}"
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))


def _load_onnx(job: Job, path: Path) -> tuple[str, Run]:
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = torch.get_num_threads(), 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return package_version("onnxruntime"), lambda x: [
        torch.from_numpy(o) for o in session.run(None, {job.input_name: x.numpy()})]


def _extra_files(job: Job) -> dict[str, str]:
    return {"mobilevitv3.json": json.dumps(job.metadata, indent=1)}


def _write_torchscript(job: Job, path: Path) -> None:
    # Tracing records one spatial size: the odd-map branches of the blocks are Python control flow.
    traced = torch.jit.trace(job.model, job.example, check_trace=False)
    job.exporter = "torch.jit.trace"
    torch.jit.save(traced, str(path), _extra_files=_extra_files(job))


def _load_torchscript(job: Job, path: Path) -> tuple[str, Run]:
    module = torch.jit.load(str(path), map_location="cpu")
    return f"torch.jit {torch.__version__}", lambda x: _flatten(module(x))


def _write_exported_program(job: Job, path: Path) -> None:
    torch.export.save(_torch_export(job), str(path), extra_files=_extra_files(job))
    job.exporter = "torch.export"


def _load_exported_program(job: Job, path: Path) -> tuple[str, Run]:
    module = torch.export.load(str(path)).module()
    return f"torch.export {torch.__version__}", lambda x: _flatten(module(x))


def _write_coreml(job: Job, path: Path) -> None:
    import coremltools as ct
    # coremltools' TorchScript frontend fails on the traced shape arithmetic with torch 2.14; torch.export works.
    program = _torch_export(job).run_decompositions({})
    precision = ct.precision.FLOAT16 if job.example.dtype == torch.float16 else ct.precision.FLOAT32
    try:
        mlmodel = ct.convert(program, convert_to="mlprogram", compute_precision=precision,
                             minimum_deployment_target=ct.target.iOS16)
    except ValueError as e:
        if "rank <= 5" not in str(e):
            raise
        raise RuntimeError(f"Core ML takes tensors of rank <= 5, and this graph reshapes to 6-D in "
                           f"{_first_6d_source(program)} (with a batch of 1 coremltools can drop that dimension)"
                           ) from e
    spec = mlmodel.get_spec()
    renames = [(spec.description.input[0].name, job.input_name)]
    renames += [(o.name, n) for o, n in zip(spec.description.output, job.output_names)]
    for old, new in renames:
        if old != new:
            ct.utils.rename_feature(spec, old, new)
    mlmodel = ct.models.MLModel(spec, weights_dir=mlmodel.weights_dir, skip_model_load=True)
    mlmodel.short_description = f"{job.metadata['model']} ({job.metadata['task']})"
    mlmodel.user_defined_metadata.update(job.metadata)
    mlmodel.save(str(path))
    job.exporter = f"{package_version('coremltools')} (from torch.export, ML program, iOS 16+)"


def _first_6d_source(program: torch.export.ExportedProgram) -> str:
    for node in program.graph.nodes:
        value = node.meta.get("val")
        if isinstance(value, Tensor) and value.dim() > 5:
            frames = re.findall(r'File "([^"]+)", line (\d+)', node.meta.get("stack_trace") or "")
            return f"{Path(frames[-1][0]).name}:{frames[-1][1]}" if frames else node.name
    return "an unknown node"


def _load_coreml(job: Job, path: Path) -> tuple[str, Run | None]:
    import coremltools as ct
    spec = ct.utils.load_spec(str(path))
    inputs = [i.name for i in spec.description.input]
    outputs = [o.name for o in spec.description.output]
    if spec.WhichOneof("Type") != "mlProgram" or inputs != [job.input_name] or outputs != job.output_names:
        raise RuntimeError(f"unexpected CoreML spec: {spec.WhichOneof('Type')}, inputs {inputs}, outputs {outputs}")
    version = package_version("coremltools")
    if platform.system() != "Darwin":
        return f"{version}: spec checked (ML program, inputs {inputs}, outputs {outputs}); prediction needs macOS", None
    model = ct.models.MLModel(str(path))  # macOS only (Core ML framework)
    return f"{version} (Core ML)", lambda x: [
        torch.from_numpy(model.predict({job.input_name: x.numpy()})[n]) for n in job.output_names]


def _write_executorch(job: Job, path: Path) -> None:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    program = to_edge_transform_and_lower(_torch_export(job), partitioner=[XnnpackPartitioner()]).to_executorch()
    path.write_bytes(program.buffer)
    job.exporter = f"{package_version('executorch')} (torch.export, XNNPACK partitioner)"


def _load_executorch(job: Job, path: Path) -> tuple[str, Run]:
    from executorch.runtime import Runtime
    method = Runtime.get().load_program(str(path)).load_method("forward")
    return f"{package_version('executorch')} (XNNPACK)", lambda x: list(method.execute([x]))


def _write_tflite(job: Job, path: Path) -> None:
    import litert_torch
    litert_torch.convert(job.model, (job.example,), dynamic_shapes=_dynamic_shapes(job)).export(str(path))
    job.exporter = package_version("litert-torch")


def _load_tflite(job: Job, path: Path) -> tuple[str, Run]:
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=str(path), num_threads=torch.get_num_threads())
    runner = interpreter.get_signature_runner()

    def run(x: Tensor) -> list[Tensor]:
        (name,) = interpreter.get_signature_list()["serving_default"]["inputs"]
        outputs = runner(**{name: x.numpy()})
        return [torch.from_numpy(outputs[k]) for k in sorted(outputs, key=_output_index)]
    return package_version("ai-edge-litert"), run


def _output_index(name: str) -> int:
    """LiteRT names the signature's outputs output_0, output_1, ... in the order of the module's outputs."""
    return int(name.rsplit("_", 1)[-1]) if name.rsplit("_", 1)[-1].isdigit() else 0


BACKENDS = {
    "onnx": Backend(_write_onnx, _load_onnx),
    "torchscript": Backend(_write_torchscript, _load_torchscript),
    "exported-program": Backend(_write_exported_program, _load_exported_program),
    "coreml": Backend(_write_coreml, _load_coreml),
    "executorch": Backend(_write_executorch, _load_executorch),
    "tflite": Backend(_write_tflite, _load_tflite),
}
