"""The one ONNX path of the package (export, bench, optimize, quantization and the runtime models all use it):
writing opset 17 from either of torch's exporters, checking the graph, and `open_onnx`, the onnxruntime adapter.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from .job import Job, Opened, dynamic_shapes, package_version

log = logging.getLogger(__name__)
ONNX_OPSET = 17


# ONNX: a static spatial size goes through the TorchScript-based exporter, which emits opset 17 natively in well under
# a second. Symbolic sizes, and graphs that exporter cannot express (PSPNet's adaptive pooling into bins that do not
# divide the map), go through the torch.export-based exporter, whose opset-18 graph is rewritten as opset 17.
def write_onnx(job: Job, path: Path) -> None:
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
                                    dynamic_shapes=dynamic_shapes(job), **names)
        proto = downgrade_to_opset17(program.model_proto)
        job.exporter = "torch.onnx (torch.export-based, opset 18 rewritten as 17)"
    opsets = {o.domain or "ai.onnx": o.version for o in proto.opset_import}
    if opsets.get("ai.onnx", 0) > ONNX_OPSET:
        raise RuntimeError(f"the graph needs opset {opsets['ai.onnx']}, more than {ONNX_OPSET}")
    folds = sorted({n.op_type for n in proto.graph.node if n.op_type in ("Col2Im", "Im2Col")})
    if folds:  # unfold/fold are reshapes here; a Col2Im node would need opset 18 and is slow on most runtimes
        raise RuntimeError(f"unexpected {', '.join(folds)} nodes in the graph")
    set_metadata(proto, job.metadata)
    proto.doc_string = f"{job.metadata['model']} exported by {job.metadata['producer']}"
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))


def set_metadata(proto, metadata: dict[str, str]) -> None:
    """Replace an ONNX model's metadata_props (what `open_onnx` gives back as `Opened.metadata`)."""
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)


def open_onnx(path: str | Path, *, threads: int | None = None) -> Opened:
    """An ONNX file in an onnxruntime CPU session with `threads` intra-op threads (default: torch's count) and no
    inter-op pool; the metadata is the file's metadata_props, read by the session (the file is read once)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> list[torch.Tensor]:
        return [torch.from_numpy(o) for o in session.run(None, {feed: x.numpy()})]
    return Opened(run, package_version("onnxruntime"), dict(session.get_modelmeta().custom_metadata_map))
