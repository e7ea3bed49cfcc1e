"""INT8 quantization (issue 11): ONNX PTQ of a digits classifier keeps its top-1, quantized dense models run and
decode, the ExecuTorch PT2E graph and QAT conversion stay close to float, and every bad input is one line."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import cli_eval
from mobilevitv3 import UserError, create_model
from mobilevitv3.cli import main
from mobilevitv3.export.edge_graph import edge_friendly
from mobilevitv3.export.quantize import quantize
from mobilevitv3.infer.calibration import calibration_images
from mobilevitv3.infer.runtime import load_runtime_model
from mobilevitv3.tasks import get_task
from mobilevitv3.train.config import TrainConfig

SCENES = {"scenes": {"size": 64, "scale": [16, 32], "train_scenes": 2, "val_scenes": 8}}


def _snr(ref: torch.Tensor, got: torch.Tensor) -> float:
    return 10 * math.log10(ref.double().pow(2).sum() / (got.double() - ref.double()).pow(2).sum().clamp_min(1e-30))


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def digits_int8(digits_run, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("q") / "xxs.int8.onnx"
    assert main(["quantize", str(digits_run), "--calib", "digits", "--calib-images", "64", "--format", "onnx",
                 "-o", str(path)]) == 0
    return path


# ---- ONNX: accuracy through the user's own eval command ---------------------------------------------------------
def test_quantize_onnx_digits_top1_matches_float(digits_run, digits_int8, capsys):
    fp32, int8 = cli_eval(digits_run, capsys), cli_eval(digits_int8, capsys)
    assert fp32["top1"] > 80 and int8["images"] == fp32["images"] == 360
    assert abs(int8["top1"] - fp32["top1"]) <= 1.0      # <= 3 of 360 images flip (target: 0.5, BENCHMARKS.md)


def test_quantize_onnx_graph_is_int8_but_stem_and_attention_core(digits_int8):
    import onnx
    from onnx import numpy_helper
    graph = onnx.load(str(digits_int8)).graph
    producer = {o: n for n in graph.node for o in n.output}
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    def int8_weight(node) -> bool:   # int8 weights with one scale per output channel
        source = producer.get(node.input[1])
        if source is None or source.op_type != "DequantizeLinear":
            return False
        weight, scale = inits[source.input[0]], inits[source.input[1]]
        return weight.dtype.name == "int8" and scale.size == weight.shape[0] > 1
    convs = [n for n in graph.node if n.op_type == "Conv"]
    stem = [c for c in convs if "/stem/" in c.name]
    assert len(stem) == 1 and not int8_weight(stem[0])                 # the stem stays float
    assert len(convs) > 30 and all(int8_weight(c) for c in convs if c not in stem)
    softmax = [n for n in graph.node if n.op_type == "Softmax"]
    assert softmax and all(producer[n.input[0]].op_type != "DequantizeLinear" for n in softmax)
    meta = {p.key: p.value for p in onnx.load(str(digits_int8)).metadata_props}
    assert meta["precision"] == "int8" and json.loads(meta["eval_config"])["image_size"] == 32


def test_runtime_model_refuses_another_image_size(digits_int8):
    model = load_runtime_model(digits_int8)
    assert model(torch.rand(3, 3, 32, 32)).shape == (3, 10)     # a batch, image by image (static-batch file)
    with pytest.raises(UserError, match="takes 32x32 images"):
        model(torch.rand(1, 3, 64, 64))


# ---- dense models: quantized files run and their outputs decode ---------------------------------------------------
@pytest.mark.parametrize("arch", ["deeplabv3_mobilevitv3_xxs", "ssdlite_mobilevitv3_xxs"])
def test_quantize_dense_model_runs_and_decodes(arch, tmp_path):
    model = create_model(arch, num_classes=11).eval()
    cfg = TrainConfig(model=arch, image_size=64, task_options=SCENES)
    images = calibration_images(model, cfg, "scenes", 8)
    report = quantize(model, "onnx", tmp_path / "m.onnx", calibration=images)
    assert report["image_size"] == [64, 64] and min(report["logit_snr_db"]) > 10
    runtime = load_runtime_model(tmp_path / "m.onnx")
    scene = Image.fromarray((images[0].permute(1, 2, 0) * 255).byte().numpy())
    task = get_task(model.identity.task)
    extra = {"score_threshold": 0.0} if task.name == "detection" else {}
    (result,) = task.predict(runtime, [scene], device=torch.device("cpu"), top_k=5, cfg=cfg, **extra)
    if task.name == "segmentation":
        fractions = [c["fraction"] for c in result["classes"]]
        assert result["size"] == [64, 64] and 0 < sum(fractions) <= 1 + 1e-6
        assert all(0 <= c["label"] < 11 for c in result["classes"])
    else:
        assert len(result["detections"]) == 5
        for det in result["detections"]:
            x0, y0, x1, y1 = det["box"]
            assert 0 <= x0 <= x1 <= 64 and 0 <= y0 <= y1 <= 64 and 0 <= det["score"] <= 1
            assert 1 <= det["label"] < 11                     # class 0 is the background


# ---- ExecuTorch: the edge-friendly graph and PT2E ---------------------------------------------------------------
@pytest.mark.parametrize("arch", ["mobilevitv3_xxs", "mobilevitv3_050"])
def test_edge_friendly_computes_the_same_function(arch):
    model = create_model(arch).eval()
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        assert torch.allclose(edge_friendly(model)(x), model(x), atol=1e-5, rtol=1e-4)


def test_pt2e_int8_graph_close_to_float(digits_run):
    from mobilevitv3.export.pt2e import calibrated_int8
    from mobilevitv3.infer import load
    model, cfg = load(str(digits_run))
    images = torch.stack(calibration_images(model, cfg, "digits", 16))[:, None]     # [16, 1, 3, 32, 32]
    graph = calibrated_int8(model, images, images[0])
    targets = {str(n.target) for n in graph.graph.nodes if n.op == "call_function"}
    assert any("dequantize_per_channel" in t for t in targets)                         # int8 conv/linear weights
    with torch.no_grad():
        ref = torch.cat([model(x) for x in images])
        got = torch.cat([graph(x) for x in images])
    assert _snr(ref, got) > 15 and (ref.argmax(1) == got.argmax(1)).float().mean() >= 0.9


def test_qat_step_trains_and_converts(digits_run):
    from mobilevitv3.export.pt2e import QATModel, convert_qat
    from mobilevitv3.infer import load
    model, cfg = load(str(digits_run))
    images = torch.stack(calibration_images(model, cfg, "digits", 16))
    qat = QATModel(model, (32, 32)).train()
    before = {k: v.clone() for k, v in qat.state_dict().items()}
    opt = torch.optim.SGD(qat.parameters(), lr=1e-3)
    loss = torch.nn.functional.cross_entropy(qat(images[:8]), model(images[:8]).argmax(1))
    loss.backward()
    opt.step()
    assert math.isfinite(float(loss)) and any(not torch.equal(before[k], v) for k, v in qat.state_dict().items())
    qat.eval()
    with torch.no_grad():
        fake, converted = qat(images), convert_qat(qat.graph)
        real = torch.cat([converted(x[None]) for x in images[:4]])
    assert _snr(fake[:4], real) > 15 and torch.equal(fake[:4].argmax(1), real.argmax(1))   # INT8 = what QAT trained


def test_quantize_executorch_pte_runs_in_the_runtime(digits_run, tmp_path, capsys, monkeypatch):
    from mobilevitv3.export import quantize as module
    monkeypatch.setattr(module, "export", _counted(module.export, float_exports := []))
    out = tmp_path / "xxs.int8.pte"
    assert main(["quantize", str(digits_run), "--calib", "digits", "--calib-images", "16", "--format",
                 "executorch", "-o", str(out), "--no-speed-check"]) == 0
    assert _json(capsys)["speed"] is None and not float_exports   # no float program lowered to time against
    assert main(["eval", str(out), "--data", "digits", "--workers", "0"]) == 0
    assert _json(capsys)["top1"] > 80


def _counted(function, calls: list):
    def wrapper(*args, **kwargs):
        calls.append(1)
        return function(*args, **kwargs)
    return wrapper


# ---- bad input: one line, exit code 2, nothing written ----------------------------------------------------------
def _fails(args: list[str], out: Path, capsys, match: str) -> None:
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*"))


@pytest.mark.parametrize("fmt", ["tflite", "coreml", "torchscript", "exported-program"])
def test_quantize_format_without_int8_is_one_line(fmt, tmp_path, capsys):
    out = tmp_path / "m.bin"
    _fails(["quantize", "mobilevitv3_xxs", "--calib", "digits", "--format", fmt, "-o", str(out)], out, capsys,
           "cannot hold an INT8 model")


@pytest.mark.parametrize("args, fmt, name, match", [
    (["--calib-images", "3"], "onnx", "m.onnx", "at least 8"),
    (["--max-drop", "-1"], "openvino", "m.xml", "--max-drop must be top-1 points in 0..100"),
    (["--method", "entropy"], "executorch", "m.pte", "executorch calibrates with percentile or minmax"),
])
def test_quantize_bad_value_of_a_checkpoint_is_one_line_before_loading(args, fmt, name, match, digits_run, tmp_path):
    # from a checkpoint, in a process of its own (the stderr a user sees, logging and runtime import chatter
    # included): refused before the model is read, so no "loaded the weights" line
    out = tmp_path / name
    proc = subprocess.run([sys.executable, "-m", "mobilevitv3", "quantize", str(digits_run), "--calib", "digits",
                           *args, "--format", fmt, "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    assert match in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not list(tmp_path.iterdir())


def test_quantize_empty_calibration_set_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="0 image"):
        quantize(create_model("mobilevitv3_xxs"), "onnx", tmp_path / "m.onnx", calibration=[])
    assert not list(tmp_path.iterdir())


def test_quantize_wrong_task_calibration_data_is_one_line(digits_run, tmp_path, capsys):
    folder = tmp_path / "two"
    for split in ("train", "val"):
        for c in ("a", "b"):
            (folder / split / c).mkdir(parents=True)
            for k in range(5):
                Image.new("RGB", (40, 40), (40 * k, 0, 0)).save(folder / split / c / f"{k}.png")
    out = tmp_path / "m.onnx"
    # the model's classes (0..9, from its checkpoint) are not the folder's: refused before any calibration
    _fails(["quantize", str(digits_run), "--calib", str(folder), "--format", "onnx", "-o", str(out)], out, capsys,
           "class folder(s) not in the training classes: a, b")


def test_quantize_missing_runtime_package_names_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)     # import onnxruntime now raises ImportError
    out = tmp_path / "m.onnx"
    _fails(["quantize", "mobilevitv3_xxs", "--calib", "digits", "--format", "onnx", "-o", str(out)], out, capsys,
           "needs the Python package onnxruntime")


def test_quantize_qat_checkpoint_to_onnx_is_refused(tmp_path, capsys):
    """A checkpoint whose saved config says `qat` (read from the same single read of the file) is refused for ONNX."""
    model = create_model("mobilevitv3_xxs", num_classes=3)
    qat = tmp_path / "qat.pt"
    torch.save({"model": model.state_dict(), "identity": model.identity.to_dict(), "config": {"qat": True}}, qat)
    out = tmp_path / "m.onnx"
    _fails(["quantize", str(qat), "--format", "onnx", "-o", str(out)], out, capsys,
           "quantize it with --format executorch")


@pytest.mark.parametrize("arch", ["deeplabv3_mobilevitv3_xxs", "ssdlite_mobilevitv3_xxs"])
def test_quantized_dense_checkpoint_evaluates_with_the_task_metric(arch, tmp_path, capsys):
    """train -> quantize -> eval on the scenes through the CLI: the INT8 file is scored on the same images with the
    same metric as its checkpoint (a segmenter's eval once needed the float model's backbone)."""
    run = tmp_path / "run"
    assert main(["train", "--model", arch, "--data", "scenes", "--task-options", json.dumps(SCENES), "--image-size",
                 "64", "--epochs", "1", "--max-steps-per-epoch", "2", "--batch-size", "2", "--threads", "1",
                 "--workers", "0", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["eval", str(run / "best.pt"), "--data", "scenes", "--workers", "0"]) == 0
    fp32 = _json(capsys)
    int8 = tmp_path / "m.int8.onnx"
    assert main(["quantize", str(run / "best.pt"), "--calib", "scenes", "--calib-images", "8", "--format", "onnx",
                 "-o", str(int8)]) == 0
    capsys.readouterr()
    assert main(["eval", str(int8), "--data", "scenes", "--workers", "0"]) == 0
    got = _json(capsys)
    key = "miou" if "miou" in fp32 else "map"
    assert got["images"] == fp32["images"] == SCENES["scenes"]["val_scenes"]
    assert math.isfinite(got[key]) and abs(got[key] - fp32[key]) <= 0.1


def test_train_qat_through_the_cli_with_default_ema(digits_run, tmp_path, capsys):
    """`train --qat --weights FP32` as the docs show it (EMA on by default): trains, evaluates, checkpoints."""
    out = tmp_path / "qat"
    assert main(["train", "--model", "mobilevitv3_xxs", "--weights", str(digits_run), "--qat", "--data", "digits",
                 "--image-size", "32", "--batch-size", "16", "--epochs", "1", "--max-steps-per-epoch", "2",
                 "--threads", "1", "--workers", "0", "--out", str(out)]) == 0
    summary = _json(capsys)
    assert math.isfinite(summary["val_top1"]) and summary["val_top1"] > 50 and (out / "best.pt").is_file()
