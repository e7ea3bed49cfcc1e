"""Edge runtimes: CoreML (ML program, from torch.export), ExecuTorch (.pte, XNNPACK) and TFLite (LiteRT, through
litert-torch). Each runtime package is imported only when its format is used."""
from __future__ import annotations

import platform
import re
from pathlib import Path

import torch
from torch import Tensor

from .job import Job, Run, dynamic_shapes, package_version, torch_export


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


def load_coreml(job: Job, path: Path) -> tuple[str, Run | None]:
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


def write_executorch(job: Job, path: Path) -> None:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from .edge_graph import edge_friendly
    from .pt2e import metadata_method
    job.model = edge_friendly(job.model)   # one XNNPACK partition instead of ~50 (edge_graph.py: 4x faster)
    program = to_edge_transform_and_lower(torch_export(job), partitioner=[XnnpackPartitioner()],
                                          constant_methods=metadata_method(job.metadata)).to_executorch()
    path.write_bytes(program.buffer)
    job.exporter = f"{package_version('executorch')} (torch.export, XNNPACK partitioner)"


def load_executorch(job: Job, path: Path) -> tuple[str, Run]:
    from executorch.runtime import Runtime
    method = Runtime.get().load_program(str(path)).load_method("forward")
    return f"{package_version('executorch')} (XNNPACK)", lambda x: list(method.execute([x]))


def write_tflite(job: Job, path: Path) -> None:
    import litert_torch
    litert_torch.convert(job.model, (job.example,), dynamic_shapes=dynamic_shapes(job)).export(str(path))
    job.exporter = package_version("litert-torch")


def load_tflite(job: Job, path: Path) -> tuple[str, Run]:
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
