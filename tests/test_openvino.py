"""OpenVINO runtime family (issue 20): the IR export computes the model in OpenVINO and carries its identity, `eval`
of the IR gives the checkpoint's top-1 through the CLI, a failed export leaves neither .xml nor .bin, and a foreign
IR is refused as a model in one line."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import cli_eval
from mobilevitv3 import UserError, create_model
from mobilevitv3.cli import main
from mobilevitv3.export import ExportError, export, open_exported
from mobilevitv3.export.api import BACKENDS
from mobilevitv3.export.job import Backend

pytest.importorskip("openvino")
# OpenVINO's runtime threads, once loaded, have crashed later in-process PyTorch training (SIGSEGV in the suite):
# every test that loads OpenVINO runs in a pytest process of its own (scripts/test.sh).
pytestmark = pytest.mark.openvino

SMALL = 64


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_openvino_export_matches_eager_and_carries_its_metadata(tmp_path):
    model = create_model("mobilevitv3_xxs.in1k").eval()
    path = tmp_path / "m.xml"
    report = export(model, "openvino", path, image_size=SMALL, dynamic_batch=True, fuse=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.xml"]   # nothing staged is left over
    assert report["bytes"] == path.stat().st_size + path.with_suffix(".bin").stat().st_size
    assert report["max_abs_diff"] <= 1e-4 and report["runtime"].startswith("openvino")
    opened = open_exported(path, threads=1)
    assert opened.metadata == report["metadata"] and opened.metadata["model"] == "mobilevitv3_xxs.in1k"
    x = torch.rand(3, 3, SMALL, SMALL, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(opened.run(x)[0], expected, rtol=0, atol=1e-4)   # f32 even on a bf16 CPU


def test_cli_openvino_export_evaluates_to_the_checkpoint_top1(digits_run, tmp_path, capsys):
    ir = tmp_path / "xxs.xml"
    assert main(["export", str(digits_run), "--format", "openvino", "-o", str(ir), "--dynamic-batch",
                 "--fuse"]) == 0   # at the size the run evaluated at (recorded in the checkpoint)
    eager, ov = cli_eval(digits_run, capsys), cli_eval(ir, capsys)
    assert eager["top1"] > 80 and ov["images"] == eager["images"] == 360
    assert ov["top1"] == eager["top1"]
    assert main(["predict", str(ir), str(tmp_path / "none.png")]) == 2   # a missing image is still one line
    assert "none.png" in capsys.readouterr().err


def test_failed_openvino_export_leaves_neither_xml_nor_bin(tmp_path, monkeypatch):
    def write_then_fail(job, path):
        path.write_text("<net/>")
        path.with_suffix(".bin").write_bytes(b"half")
        raise RuntimeError("converter crashed")
    monkeypatch.setitem(BACKENDS, "openvino", Backend(write_then_fail, BACKENDS["openvino"].open))
    with pytest.raises(ExportError, match="openvino export of mobilevitv3_xxs failed: converter crashed"):
        export(create_model("mobilevitv3_xxs"), "openvino", tmp_path / "m.xml", image_size=SMALL)
    assert list(tmp_path.iterdir()) == []


def test_a_foreign_ir_opens_without_metadata_and_is_refused_as_a_model(tmp_path):
    import openvino as ov

    from mobilevitv3.infer.runtime import load_runtime_model
    path = tmp_path / "foreign.xml"
    ov.save_model(ov.convert_model(torch.nn.Conv2d(3, 4, 1).eval(), example_input=torch.rand(1, 3, 8, 8)), str(path))
    opened = open_exported(path)
    assert opened.metadata == {} and opened.run(torch.ones(1, 3, 8, 8))[0].shape == (1, 4, 8, 8)
    with pytest.raises(UserError, match="carries no mobilevitv3 metadata"):
        load_runtime_model(path)


# ---- INT8 through NNCF ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("max_drop", [None, 0.5])
def test_cli_openvino_int8_evaluates_within_the_bound(digits_run, tmp_path, capsys, max_drop):
    pytest.importorskip("nncf")
    ir = tmp_path / "xxs.int8.xml"
    bound = [] if max_drop is None else ["--max-drop", str(max_drop)]
    assert main(["quantize", str(digits_run), "--calib", "digits", "--calib-images", "64", "--format", "openvino",
                 "-o", str(ir), *bound]) == 0
    report = _json(capsys)
    assert report["max_drop"] == max_drop and ir.with_suffix(".bin").is_file() and min(report["logit_snr_db"]) > 6
    assert main(["eval", str(digits_run), "--data", "digits", "--workers", "0"]) == 0
    fp32 = _json(capsys)
    assert main(["eval", str(ir), "--data", "digits", "--workers", "0"]) == 0
    int8 = _json(capsys)
    assert int8["images"] == fp32["images"] == 360 and fp32["top1"] > 80
    # accuracy control measures on the same 360 validation images eval reads: the bound holds exactly there
    assert fp32["top1"] - int8["top1"] <= (max_drop if max_drop is not None else 1.0)


def test_openvino_int8_maps_method_onto_nncf_range_estimators(tmp_path, capsys):
    """`--method percentile` is NNCF's MEAN_QUANTILE preset (the default: NNCF's own MEAN_MINMAX), the float groups
    asked for stay float (no FakeQuantize feeds the stem's conv), and the file is timed against OpenVINO's float."""
    pytest.importorskip("nncf")
    import openvino as ov

    from mobilevitv3.export.quantize import quantize
    model = create_model("mobilevitv3_xxs", num_classes=10).eval()
    images = list(torch.rand(8, 3, SMALL, SMALL, generator=torch.Generator().manual_seed(0)))
    report = quantize(model, "openvino", tmp_path / "q.xml", calibration=images, method="percentile",
                      float_groups=("stem",), verify=False)     # random weights: the graph is what is checked
    assert report["calibration_method"] == "percentile" and "MEAN_QUANTILE" in report["exporter"]
    assert report["speed"]["float_path"] in ("OpenVINO bf16", "OpenVINO fp32") and report["speed"]["int8_ms"] > 0
    ops = {op.get_friendly_name(): op for op in ov.Core().read_model(str(tmp_path / "q.xml")).get_ops()}
    convs = [n for n, op in ops.items() if op.get_type_name() == "Convolution"]
    stem = [n for n in convs if "/stem/" in n]
    quantized = {n for n in convs if any(i.get_source_output().get_node().get_type_name() == "FakeQuantize"
                                         for i in ops[n].inputs())}
    assert stem and not quantized & set(stem) and len(quantized) > len(convs) // 2
    out = tmp_path / "m.xml"
    assert main(["quantize", "mobilevitv3_xxs", "--calib", "digits", "--format", "openvino", "--method", "entropy",
                 "-o", str(out)]) == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if "quantize: error:" in ln]  # not import chatter
    assert len(errors) == 1 and "--method entropy is onnxruntime's" in errors[0] and not out.exists()


def test_max_drop_is_refused_where_it_cannot_be_measured(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    capsys.readouterr()
    assert main(["quantize", "mobilevitv3_xxs", "--calib", "digits", "--format", "onnx", "-o", str(out),
                 "--max-drop", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "--max-drop needs --format openvino" in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


# ---- optimize in bf16 -----------------------------------------------------------------------------------------------
def test_optimize_bf16_keeps_top1_on_real_digits(digits_run):
    import mobilevitv3
    from mobilevitv3.export import bf16, cpu
    from mobilevitv3.infer import load
    from mobilevitv3.infer.calibration import labelled_images
    if not cpu.cpu_has_bf16():
        pytest.skip("this CPU has no native bf16")
    model, cfg = load(str(digits_run))
    pairs = labelled_images(model, cfg, "digits", 360)
    images = torch.stack([x for x, _ in pairs])
    fast = mobilevitv3.optimize(model, image_size=tuple(images.shape[-2:]), threads=1, precision="bf16")
    assert fast.backend == "openvino-bf16"
    with torch.no_grad():
        ref, got = model(images), fast(images)
    # bf16: the same class on every real image, logits within BF16_TOLERANCE of the largest one
    assert torch.equal(got.argmax(1), ref.argmax(1)) and len(pairs) == 360
    assert (got - ref).abs().max().item() <= bf16.BF16_TOLERANCE * ref.abs().max().item()


def test_cli_bench_times_the_ir_in_openvino(capsys):
    runtimes = ["openvino", "openvino-bf16"]
    capsys.readouterr()
    assert main(["bench", "mobilevitv3_xxs", "--runtime", *runtimes, "--image-size", "64", "--threads", "1",
                 "--warmup", "1", "--runs", "4", "--chunk", "2", "--no-train"]) == 0
    (row,) = _json(capsys)["results"]
    assert set(row["runtimes"]) == {f"ours/{r}" for r in runtimes}
    assert row["runtimes"]["ours/openvino"]["runtime_version"].endswith("(CPU, f32)")
    assert row["runtimes"]["ours/openvino-bf16"]["runtime_version"].endswith("(CPU, bf16)")
    assert all(s["runs"] == 4 and s["latency_ms_median"] > 0 for s in row["runtimes"].values())


def test_openvino_int8_default_groups_follow_the_architecture_and_run_with_the_cpus_float(tmp_path):
    """v3-S keeps its fusion / projection convs float by default (layer_groups.MODEL_FLOAT_GROUPS); the INT8 IR
    opens with its float ops in bf16 where the CPU computes bf16 natively, else f32, and a float IR in f32."""
    pytest.importorskip("nncf")
    import openvino as ov

    from mobilevitv3.export import cpu
    from mobilevitv3.export.openvino import open_openvino
    from mobilevitv3.export.quantize import quantize
    model = create_model("mobilevitv3_s", num_classes=10).eval()
    images = list(torch.rand(8, 3, SMALL, SMALL, generator=torch.Generator().manual_seed(0)))
    path = tmp_path / "q.xml"
    report = quantize(model, "openvino", path, calibration=images, verify=False, compare_speed=False)
    assert report["float_groups"] == ["fusion"]
    ops = {op.get_friendly_name(): op for op in ov.Core().read_model(str(path)).get_ops()}
    convs = [n for n, op in ops.items() if op.get_type_name() == "Convolution"]
    fed = {n for n in convs if any(i.get_source_output().get_node().get_type_name() == "FakeQuantize"
                                   for i in ops[n].inputs())}
    fusion = [n for n in convs if "/fusion/" in n or "/conv_proj/" in n]
    assert fusion and not fed & set(fusion) and any("/expand/" in n for n in fed)
    rest = "bf16" if cpu.cpu_has_bf16() else "f32"
    assert open_openvino(path).runtime.endswith(f"(CPU, int8, float ops {rest})")
    assert open_openvino(path, precision="f32").runtime.endswith("(CPU, int8, float ops f32)")
