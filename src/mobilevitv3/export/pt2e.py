"""PT2E INT8 for ExecuTorch: the XNNPACK quantizer on the edge-friendly graph, post-training or quantization-aware.

Weights int8 symmetric per output channel, activations int8 (symmetric, per tensor, histogram-observed), exactly what
XNNPACK's QS8 kernels take. The graph is `edge_graph.edge_friendly(model)`: one XNNPACK partition instead of 50. The
quantizer annotates convs, linears, adds, muls and concats; sigmoid (SiLU), bmm and softmax have FP32-only XNNPACK
kernels, so the attention core and SiLU run in float inside the delegate (measured: docs/export.md).
"""
from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor, nn

from ..layers import fuse
from .edge_graph import edge_friendly
from .job import package_version

METADATA_METHOD = "mobilevitv3_metadata"   # a constant method of the program: the metadata JSON as uint8 bytes


def _quantizer(*, qat: bool):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)
    return XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=qat))


def _captured(model: nn.Module, example: Tensor) -> torch.fx.GraphModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.export.export(model, (example,), strict=False).module()


def calibrated_int8(model: nn.Module, calibration: Iterable[Tensor], example: Tensor) -> torch.fx.GraphModule:
    """Post-training quantization: fold BatchNorm, swap in the edge-friendly modules, observe `calibration`
    batches ([B, 3, H, W] at the example's size), convert to a Q/DQ graph."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    prepared = prepare_pt2e(_captured(fuse(edge_friendly(model)), example), _quantizer(qat=False))
    with torch.no_grad():
        for batch in calibration:
            prepared(batch)
    return convert_pt2e(prepared)


def prepare_qat(model: nn.Module, example: Tensor) -> torch.fx.GraphModule:
    """Quantization-aware training: the edge-friendly graph with fake quantization (BatchNorm kept and folded into
    the fake-quantized conv weights during training, as PT2E's QAT patterns do). Train it like the float model;
    `convert_qat` then gives the Q/DQ graph without any calibration."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e
    friendly = edge_friendly(model).train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        captured = torch.export.export(friendly, (example,), strict=False).module()
    return prepare_qat_pt2e(captured, _quantizer(qat=True))


def convert_qat(prepared: torch.fx.GraphModule) -> torch.fx.GraphModule:
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e
    return convert_pt2e(move_exported_model_to_eval(prepared))


def write_pte(graph: nn.Module, example: Tensor, path: Path, metadata: dict[str, str]) -> str:
    """Lower a (quantized) graph to XNNPACK and write the .pte with `metadata` as a constant method; returns the
    exporter description."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    blob = torch.tensor(list(json.dumps(metadata).encode()), dtype=torch.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(graph, (example,), strict=False)
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()],
                                              constant_methods={METADATA_METHOD: blob})
        path.write_bytes(lowered.to_executorch().buffer)
    return f"{package_version('executorch')} (PT2E XNNPACKQuantizer, XNNPACK partitioner)"


def read_pte_metadata(program) -> dict[str, str]:
    """The metadata written by `write_pte` from a loaded ExecuTorch program ({} when it has none)."""
    if METADATA_METHOD not in program.method_names:
        return {}
    blob = program.load_method(METADATA_METHOD).execute([])[0]
    return json.loads(bytes(blob.tolist()).decode())
