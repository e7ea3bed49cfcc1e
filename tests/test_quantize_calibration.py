"""INT8 accurate by default and never silently slower (issue 20): the percentile calibration is robust to degenerate
tensors (where onnxruntime's own Percentile calibrator fails), it is the default in onnxruntime and ExecuTorch,
`--method` is checked per toolchain in one line, the layer groups kept float are the ones asked for, and `quantize`
times its file against the runtime's float path and says so when INT8 is the slower."""
from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from mobilevitv3 import create_model
from mobilevitv3.cli import main
from mobilevitv3.export.calibration import BINS, AbsHistogram
from mobilevitv3.export.quantize import _Reader, quantize
from mobilevitv3.layers.mv2 import InvertedResidual

SIZE = 64


def _images(n: int, seed: int = 0) -> list[torch.Tensor]:
    return list(torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)))


def _degenerate_model() -> torch.nn.Module:
    """v3-XXS whose first inverted residual expands to 1 + O(1e-7): a map constant up to a few float steps, as an
    untrained or dead channel gives (after BatchNorm folding the conv's output is exactly that)."""
    torch.manual_seed(0)   # untrained INT8 logit SNR varies from -1 to 12 dB with the draw, for any calibration
    model = create_model("mobilevitv3_xxs", num_classes=10).eval()
    block = next(m for m in model.modules() if isinstance(m, InvertedResidual))
    with torch.no_grad():
        block.expand.conv.weight.mul_(1e-7)
        norm = block.expand.norm
        norm.running_mean.zero_(), norm.running_var.fill_(1.0), norm.weight.fill_(1.0), norm.bias.fill_(1.0)
    return model


# ---- the histogram ------------------------------------------------------------------------------------------------
def test_abs_histogram_percentile_matches_the_exact_percentile_over_growing_ranges():
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(50_000, generator=g) * scale for scale in (1e-3, 1.0, 30.0, 2.0)]   # the edge doubles
    batches[1][7] = 1e4                                                                         # one outlier
    hist = AbsHistogram()
    for b in batches:
        hist.add(b)
    data = torch.cat(batches)
    lo, hi, clipped = hist.range(99.999)           # a percentile that 200,000 values resolve
    exact = float(np.percentile(data.abs().numpy(), 99.999))
    step = 2 * hist.edge / BINS                                    # one bin, merged once more for safety
    assert clipped and hist.counts.sum() == data.numel()
    assert abs(hi - min(float(data.max()), exact)) <= step and abs(lo - max(float(data.min()), -exact)) <= step
    assert hi < 1e3                                                # the outlier is clipped


@pytest.mark.parametrize("values", [torch.zeros(500), torch.full((500,), 0.731), 1 + torch.randn(500) * 3e-8,
                                    torch.tensor([0.0, math.inf])])
def test_abs_histogram_degenerate_tensor_falls_back_to_min_max(values):
    hist = AbsHistogram()
    hist.add(values)
    hist.add(values)
    lo, hi, clipped = hist.range()
    assert not clipped and (lo, hi) == (float(values.min()), float(values.max()))


# ---- onnxruntime --------------------------------------------------------------------------------------------------
def test_onnxruntime_percentile_alone_fails_on_the_degenerate_tensor(tmp_path):
    from onnxruntime.quantization import CalibrationMethod, quantize_static

    from mobilevitv3.export import export
    export(_degenerate_model(), "onnx", tmp_path / "f.onnx", image_size=SIZE, fuse=True)
    with pytest.raises(ValueError, match="Too many bins"):
        quantize_static(str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx"), _Reader(torch.stack(_images(8))),
                        calibrate_method=CalibrationMethod.Percentile)


def test_onnx_default_is_percentile_and_survives_the_degenerate_tensor(tmp_path):
    report = quantize(_degenerate_model(), "onnx", tmp_path / "q.onnx", calibration=_images(8), compare_speed=False)
    assert report["calibration_method"] == "percentile" and report["minmax_fallback_tensors"] >= 1
    assert min(report["logit_snr_db"]) > 10


def test_onnx_float_groups_are_the_ones_asked_for(tmp_path):
    import onnx
    path = tmp_path / "q.onnx"
    quantize(create_model("mobilevitv3_xxs"), "onnx", path, calibration=_images(8), compare_speed=False,
             float_groups=("stem", "attention", "depthwise"))
    graph = onnx.load(str(path)).graph
    producer = {o: n for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    int8 = {c.name: producer.get(c.input[1]) is not None and producer[c.input[1]].op_type == "DequantizeLinear"
            for c in convs}
    assert all(not q for name, q in int8.items() if "/dw/" in name or "/stem/" in name)
    assert all(q for name, q in int8.items() if "/expand/" in name or "/project/" in name)


# ---- ExecuTorch PT2E ----------------------------------------------------------------------------------------------
def test_pt2e_percentile_observers_survive_the_degenerate_tensor():
    """The percentile observer falls back to min/max on the degenerate tensor and quantizes the rest as well as
    plain min/max observers do (an untrained model's INT8 SNR is low for any calibration, so they are compared)."""
    pytest.importorskip("executorch")
    from mobilevitv3.export.pt2e import calibrated_int8
    model = _degenerate_model()
    images = torch.stack(_images(8))[:, None]                                       # [8, 1, 3, H, W]
    with torch.no_grad():
        ref = torch.cat([model(x) for x in images])
    snr = {}
    for method in ("percentile", "minmax"):
        graph = calibrated_int8(model, images, images[0], method=method)
        with torch.no_grad():
            got = torch.cat([graph(x) for x in images])
        assert torch.isfinite(got).all()
        snr[method] = 10 * math.log10(ref.double().pow(2).sum() / (got - ref).double().pow(2).sum())
        if method == "percentile":
            assert graph.meta["minmax_fallback_tensors"] >= 1
    assert snr["percentile"] >= snr["minmax"] - 1.0, snr


# ---- the speed check ----------------------------------------------------------------------------------------------
def test_quantize_times_its_file_against_the_float_path_and_warns_when_slower(tmp_path, monkeypatch, caplog):
    from mobilevitv3.export import quantize as module
    report = quantize(create_model("mobilevitv3_xxs"), "onnx", tmp_path / "a.onnx", calibration=_images(8))
    speed = report["speed"]
    assert speed["float_path"] == "onnxruntime fp32" and speed["int8_ms"] > 0 and speed["float_ms"] > 0
    assert speed["ratio"] == pytest.approx(speed["int8_ms"] / speed["float_ms"], rel=1e-2)
    monkeypatch.setattr(module, "measure", lambda runs, x: {"int8": 6.0, "float": 5.0})   # an INT8 file that loses
    caplog.clear()                         # the first file may itself have lost on a busy machine and warned
    with caplog.at_level(logging.WARNING, logger=module.__name__):
        quantize(create_model("mobilevitv3_xxs"), "onnx", tmp_path / "b.onnx", calibration=_images(8))
    (line,) = [r.getMessage() for r in caplog.records
               if r.levelno == logging.WARNING and r.name == module.__name__]
    assert "slower than onnxruntime fp32" in line and "6.00 vs 5.00 ms" in line and "\n" not in line


# ---- --method per toolchain: one line, exit code 2 ----------------------------------------------------------------
def test_entropy_outside_onnxruntime_is_one_line(tmp_path, capsys):    # openvino: tests/test_openvino.py
    pytest.importorskip("executorch")
    out = tmp_path / "m.pte"
    assert main(["quantize", "mobilevitv3_xxs", "--calib", "digits", "--format", "executorch", "--method", "entropy",
                 "-o", str(out)]) == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if "quantize: error:" in ln]  # not import chatter
    assert len(errors) == 1 and "--method entropy is onnxruntime's" in errors[0] and not out.exists()
