"""PT2E INT8 for ExecuTorch: the XNNPACK quantizer on the edge-friendly graph, post-training or quantization-aware.

Weights int8 symmetric per output channel, activations int8 per tensor (percentile-observed by default, see
`calibration.py`; min/max on request), exactly what XNNPACK's QS8 kernels take. The graph is
`edge_graph.edge_friendly(model)`: one XNNPACK partition instead of 50. The quantizer annotates convs, linears,
adds, muls and concats; sigmoid (SiLU), bmm and softmax have FP32-only XNNPACK kernels, so the attention core and
SiLU run in float inside the delegate (measured: docs/export.md).
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import re
import warnings
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor, nn

from ..layers import fuse
from ..models.identity import Identified
from .calibration import percentile_observer
from .edge import lower_to_pte
from .edge_graph import edge_friendly
from .job import package_version
from .layer_groups import FLOAT_GROUPS, module_path, pattern


def _quantizer(*, qat: bool, method: str = "percentile",
               float_groups: tuple[str, ...] = FLOAT_GROUPS["executorch"]):
    """XNNPACK's symmetric per-channel config; post-training with percentile (or min/max) activation observers
    (its default HistogramObserver costs ~3 s per 64x64 image on this CPU, docs/export.md; the percentile observer
    is one histc per tensor). Ops in `float_groups` (layer_groups.GROUPS) stay float."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e import MinMaxObserver
    config = get_symmetric_quantization_config(is_per_channel=True, is_qat=qat)
    if not qat:
        observer = (percentile_observer() if method == "percentile" else MinMaxObserver).with_args(eps=2 ** -12)
        act = dataclasses.replace(config.input_activation, observer_or_fake_quant_ctr=observer)
        config = dataclasses.replace(config, input_activation=act, output_activation=act)

    class Quantizer(XNNPACKQuantizer):   # executorch 1.5.1's cat annotator ignores the filter: drop the pattern
        SUPPORTED_PATTERNS = [p for p in XNNPACKQuantizer.SUPPORTED_PATTERNS if p.name != "cat"]
    keep = functools.partial(_quantizable, groups=pattern(float_groups))
    return Quantizer().set_global(config).set_filter_function(keep)


FLOAT_MODULES = ("MeanLayerNorm", "MeanGroupNorm", "BmmAttention", "GridLinearAttention")


def _quantizable(node: torch.fx.Node, *, groups: re.Pattern | None) -> bool:
    """Ops in the float `groups` (the stem by default: most sensitive, see quantize.float_nodes) and the ops written
    directly in the norms and the attention core stay float (their projections, child modules, are quantized): a
    quantized variance or softmax-weighted sum costs accuracy, and under QAT the fake-quantized
    variance turned eval-mode outputs into NaN. `cat` stays float too: XNNPACK's annotation gives a concat's inputs
    the output's scale, and the v3 fusion concatenates the local features with a global branch of a far larger
    range (untrained: 0.0006 vs 4.5), which rounded the local features to one value."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return True
    path, kind = list(stack.values())[-1]
    if groups is not None and groups.search(module_path(path)):
        return False
    name = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    return not name.endswith(FLOAT_MODULES)


def _captured(model: nn.Module, example: Tensor) -> torch.fx.GraphModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.export.export(model, (example,), strict=False).module()


def calibrated_int8(model: nn.Module, calibration: Iterable[Tensor], example: Tensor, *, method: str = "percentile",
                    float_groups: tuple[str, ...] = FLOAT_GROUPS["executorch"]) -> torch.fx.GraphModule:
    """Post-training quantization: fold BatchNorm, swap in the edge-friendly modules, observe `calibration`
    batches ([B, 3, H, W] at the example's size) with `method` observers, convert to a Q/DQ graph. The graph's
    `meta["minmax_fallback_tensors"]` counts the activations whose range was degenerate (percentile: min/max)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    quantizer = _quantizer(qat=False, method=method, float_groups=float_groups)
    prepared = prepare_pt2e(_captured(fuse(edge_friendly(model)), example), quantizer)
    with torch.no_grad():
        for batch in calibration:
            prepared(batch)
    observer = percentile_observer()
    fallbacks = sum(m.is_degenerate() for m in prepared.modules() if isinstance(m, observer))
    graph = convert_pt2e(prepared)
    graph.meta["minmax_fallback_tensors"] = fallbacks
    return graph


def prepare_qat(model: nn.Module, example: Tensor) -> torch.fx.GraphModule:
    """Quantization-aware training: the edge-friendly graph with fake quantization (BatchNorm kept, folded into the
    fake-quantized conv weights by PT2E's QAT patterns), any batch size at the example's image size. Train it like
    the float model; `convert_qat` then gives the Q/DQ graph without any calibration."""
    from torch.export import Dim
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e
    friendly = edge_friendly(model).train()
    example = example.expand(max(2, len(example)), *example.shape[1:]).contiguous()  # a batch of 1 specialises
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        captured = torch.export.export(friendly, (example,), dynamic_shapes=({0: Dim("batch", max=1024)},),
                                       strict=False).module()
    return prepare_qat_pt2e(captured, _quantizer(qat=True))


def convert_qat(prepared: torch.fx.GraphModule) -> torch.fx.GraphModule:
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e
    return convert_pt2e(move_exported_model_to_eval(copy.deepcopy(prepared)))


class QATModel(Identified, nn.Module):
    """A model under quantization-aware training, for the trainer: the fake-quant graph in `graph`, the float
    model's identity, and its task methods (SSD priors, loss, decoding: they use no weights) borrowed from it."""

    def __init__(self, model: nn.Module, image_size: tuple[int, int]) -> None:
        super().__init__()
        self.identity, self.num_classes = model.identity, model.num_classes
        self.image_size = tuple(image_size)
        self.graph = prepare_qat(model, torch.rand(2, 3, *self.image_size))
        self._float = [model]   # a list: not a submodule, so its parameters are not trained or saved twice

    def forward(self, x: Tensor):
        if tuple(x.shape[-2:]) != self.image_size:
            raise ValueError(f"a QAT graph runs at its capture size {self.image_size}, got {tuple(x.shape[-2:])}")
        return self.graph(x)

    def train(self, mode: bool = True) -> QATModel:
        from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train
        self.training = mode   # not nn.Module.train: an exported graph switches through torchao only
        (move_exported_model_to_train if mode else move_exported_model_to_eval)(self.graph)
        return self

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("anchors", "loss", "postprocess", "cfg", "head_cfg"):
                return getattr(self.__dict__["_float"][0], name)
            raise


def write_pte(graph: nn.Module, example: Tensor, path: Path, metadata: dict[str, str]) -> str:
    """Write a (quantized) graph as an XNNPACK .pte with `metadata` (edge.lower_to_pte); returns the exporter
    description."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lower_to_pte(torch.export.export(graph, (example,), strict=False), path, metadata)
    return f"{package_version('executorch')} (PT2E XNNPACKQuantizer, XNNPACK partitioner)"
