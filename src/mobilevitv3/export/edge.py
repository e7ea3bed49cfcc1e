"""Edge runtimes: CoreML (ML program, from torch.export), ExecuTorch (.pte, XNNPACK) and TFLite (LiteRT, through
litert-torch): each format's writer and its one runtime adapter (`open_*`). `lower_to_pte` is the one XNNPACK
lowering (float export here, INT8 in pt2e.py). Each runtime package is imported only when its format is used."""
from __future__ import annotations

import json
import logging
import operator
import platform
import re
from pathlib import Path

import torch
from torch import Tensor

from .edge_graph import edge_friendly
from .job import Job, Opened, dynamic_shapes, package_version, torch_export

log = logging.getLogger(__name__)
METADATA_METHOD = "mobilevitv3_metadata"   # a constant method of the program: the metadata JSON as uint8 bytes


def write_coreml(job: Job, path: Path) -> None:
    import coremltools as ct
    # coremltools' TorchScript frontend fails on the traced shape arithmetic with torch 2.14; torch.export works.
    program = torch_export(job).run_decompositions({})
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


def open_coreml(path: Path, *, threads: int | None = None) -> Opened:
    """The ML program with the names its metadata promises; it predicts on macOS only (the Core ML framework), so
    elsewhere `run` is None and the spec is what gets checked. Core ML picks its own threads."""
    import coremltools as ct
    spec = ct.utils.load_spec(str(path))
    metadata = dict(spec.description.metadata.userDefined)
    inputs = [i.name for i in spec.description.input]
    outputs = [o.name for o in spec.description.output]
    promised_outputs = json.loads(metadata["output_names"]) if "output_names" in metadata else outputs
    if spec.WhichOneof("Type") != "mlProgram" or inputs != [metadata.get("input_name", "image")] \
            or outputs != promised_outputs:
        raise RuntimeError(f"unexpected CoreML spec: {spec.WhichOneof('Type')}, inputs {inputs}, outputs {outputs}")
    version = package_version("coremltools")
    if platform.system() != "Darwin":
        return Opened(None, f"{version}: spec checked (ML program, inputs {inputs}, outputs {outputs}); prediction "
                            f"needs macOS", metadata)
    model = ct.models.MLModel(str(path))

    def run(x: Tensor) -> list[Tensor]:
        predicted = model.predict({inputs[0]: x.numpy()})
        return [torch.from_numpy(predicted[n]) for n in outputs]
    return Opened(run, f"{version} (Core ML)", metadata)


def write_executorch(job: Job, path: Path) -> None:
    job.model = edge_friendly(job.model)   # one XNNPACK partition instead of ~50 (edge_graph.py: 4x faster)
    lower_to_pte(torch_export(job), path, job.metadata)
    job.exporter = f"{package_version('executorch')} (torch.export, XNNPACK partitioner)"


def lower_to_pte(program: torch.export.ExportedProgram, path: Path, metadata: dict[str, str]) -> None:
    """Lower an exported (float or quantized) program to XNNPACK and write the .pte, `metadata` as a constant
    method that `open_executorch` reads back. Ops left to the portable runtime are logged (a warning: each one
    splits the graph and runs unoptimised)."""
    lowered = lower_xnnpack(program, metadata)
    partitions, outside = delegation(lowered)
    if outside:
        log.warning("ExecuTorch: %d op(s) outside the XNNPACK delegate (%d partitions): %s", len(outside),
                    partitions, ", ".join(sorted(set(outside))))
    else:
        log.info("ExecuTorch: the whole graph runs in XNNPACK (%d partition)", partitions)
    path.write_bytes(lowered.to_executorch().buffer)


def lower_xnnpack(program: torch.export.ExportedProgram, metadata: dict[str, str] | None = None):
    """The program lowered with the XNNPACK partitioner (an executorch `EdgeProgramManager`)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    return to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()],
                                       constant_methods=None if metadata is None else _metadata_method(metadata))


def delegation(lowered) -> tuple[int, list[str]]:
    """(XNNPACK partitions, the ops outside them, one name per node) of a lowered program: (1, []) when XNNPACK
    runs the whole graph."""
    partitions, outside = 0, []
    for node in lowered.exported_program().graph.nodes:
        if node.op != "call_function" or node.target is operator.getitem:
            continue
        name = getattr(node.target, "__name__", str(node.target))
        if "executorch_call_delegate" in name:
            partitions += 1
        else:
            outside.append(name)
    return partitions, outside


def _metadata_method(metadata: dict[str, str]) -> dict[str, Tensor]:
    """`constant_methods` holding the metadata JSON as a uint8 tensor (the ExecuTorch Python runtime returns
    tensors from a constant method; a string constant comes back empty)."""
    return {METADATA_METHOD: torch.tensor(list(json.dumps(metadata).encode()), dtype=torch.uint8)}


def open_executorch(path: Path, *, threads: int | None = None) -> Opened:
    """A .pte in the ExecuTorch runtime; `threads` resizes XNNPACK's pool (default: left as it is, one thread per
    core). The metadata is the one `lower_to_pte` wrote ({} for a program without it)."""
    from executorch.runtime import Runtime
    if threads:
        from executorch.extension.pybindings import portable_lib
        portable_lib._unsafe_reset_threadpool(threads)   # XNNPACK's pool; the only knob the bindings offer
    program = Runtime.get().load_program(str(path))
    metadata = {}
    if METADATA_METHOD in program.method_names:
        blob = program.load_method(METADATA_METHOD).execute([])[0]
        metadata = json.loads(bytes(blob.tolist()).decode())
    method = program.load_method("forward")
    return Opened(lambda x: list(method.execute([x.contiguous()])), f"{package_version('executorch')} (XNNPACK)",
                  metadata)


def write_tflite(job: Job, path: Path) -> None:
    import litert_torch
    litert_torch.convert(job.model, (job.example,), dynamic_shapes=dynamic_shapes(job)).export(str(path))
    job.exporter = package_version("litert-torch")


def open_tflite(path: Path, *, threads: int | None = None) -> Opened:
    """A .tflite in the LiteRT interpreter with `threads` threads (default: torch's count); litert-torch writes no
    metadata of ours into the file."""
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=str(path), num_threads=threads or torch.get_num_threads())
    runner = interpreter.get_signature_runner()
    (name,) = interpreter.get_signature_list()["serving_default"]["inputs"]

    def run(x: Tensor) -> list[Tensor]:
        outputs = runner(**{name: x.numpy()})
        return [torch.from_numpy(outputs[k]) for k in sorted(outputs, key=_output_index)]
    return Opened(run, package_version("ai-edge-litert"), {})


def _output_index(name: str) -> int:
    """LiteRT names the signature's outputs output_0, output_1, ... in the order of the module's outputs."""
    return int(name.rsplit("_", 1)[-1]) if name.rsplit("_", 1)[-1].isdigit() else 0
