"""The ExecuTorch phone path: XNNPACK runs the whole graph (no op left to the portable runtime, one partition) for
both families and their dense heads, float and INT8, and the .pte computes what eager (or the INT8 graph) does."""
from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from mobilevitv3 import create_model
from mobilevitv3.export.edge_graph import GridLinearAttention, MeanGroupNorm, edge_friendly
from mobilevitv3.layers.attention import LinearSelfAttention

SIZE = 64   # every block sees an even map; the graph's ops are those of 256x256


def _snr(ref: torch.Tensor, got: torch.Tensor) -> float:
    return 10 * math.log10(ref.double().pow(2).sum() / (got.double() - ref.double()).pow(2).sum().clamp_min(1e-30))


def _lower(graph: torch.nn.Module, x: torch.Tensor, tmp_path):
    """(partitions, Counter of the ops outside XNNPACK, the .pte's outputs for x)."""
    pytest.importorskip("executorch")
    from mobilevitv3.export.edge import delegation, lower_xnnpack, open_executorch
    lowered = lower_xnnpack(torch.export.export(graph, (x,), strict=False))
    partitions, outside = delegation(lowered)
    path = tmp_path / "m.pte"
    path.write_bytes(lowered.to_executorch().buffer)
    return partitions, Counter(outside), open_executorch(path).run(x)


def _flat(out) -> list[torch.Tensor]:
    return [out] if isinstance(out, torch.Tensor) else list(out)


@pytest.mark.parametrize("arch", ["mobilevitv3_050", "mobilevitv3_xxs",
                                  "deeplabv3_mobilevitv3_050", "ssdlite_mobilevitv3_050"])
def test_float_pte_runs_whole_in_xnnpack_and_equals_eager(arch, tmp_path):
    model = create_model(arch).eval()
    x = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    partitions, outside, got = _lower(edge_friendly(model), x, tmp_path)
    assert (partitions, outside) == (1, Counter())
    with torch.no_grad():
        expected = _flat(model(x))
    for g, e in zip(got, expected, strict=True):
        assert torch.allclose(g, e, atol=1e-4, rtol=1e-4), (g - e).abs().max()


@pytest.mark.parametrize("arch", ["mobilevitv3_050", "mobilevitv3_xxs"])
def test_int8_pte_runs_whole_in_xnnpack_and_equals_the_int8_graph(arch, tmp_path):
    from mobilevitv3.export.pt2e import calibrated_int8
    torch.manual_seed(0)   # random weights, the same every run
    model = create_model(arch).eval()
    images = torch.rand(8, 1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    graph = calibrated_int8(model, images, images[0])
    partitions, outside, (got,) = _lower(graph, images[0], tmp_path)
    assert (partitions, outside) == (1, Counter())
    with torch.no_grad():
        expected = graph(images[0])
    assert _snr(expected, got) > 20   # XNNPACK's int8 kernels round like the graph's Q/DQ (23 dB, random weights)


def test_edge_modules_compute_the_source_modules():
    torch.manual_seed(0)
    norm = torch.nn.GroupNorm(1, 24)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = torch.randn(2, 24, 8, 6) * 3 + 1
    for patch, shape in ((2, (2, 24, 8, 6)), (0, (2, 24, 4, 12))):   # a map, and a grid [B, d, P, N]
        attn = LinearSelfAttention(24, patch=patch).eval()
        t = torch.randn(shape)
        with torch.no_grad():
            assert torch.allclose(GridLinearAttention(attn)(t), attn(t), atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        assert torch.allclose(MeanGroupNorm(norm)(x), norm(x), atol=1e-5, rtol=1e-4)
