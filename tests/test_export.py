"""Export: each file computes the model in its own runtime (ONNX Runtime, TorchScript, torch.export, CoreML spec),
an exported official checkpoint keeps the official outputs, ONNX stays at opset <= 17 without Col2Im and carries the
tag's preprocessing, and bad input is one clear error that leaves no file behind."""
import dataclasses
import importlib.util
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mobilevitv3 import create_model
from mobilevitv3.errors import UserError
from mobilevitv3.export import FORMATS, ExportError, export, open_exported, size_multiple
from mobilevitv3.export.api import BACKENDS
from mobilevitv3.export.job import Backend, Opened
from official import inputs, official_state_dict

SMALL = 64  # the smallest size at which every block of every family sees an even map at output stride 32
ONNX_MODELS = ["mobilevitv3_xxs.in1k", "mobilevitv3_050.in1k", "deeplabv3_mobilevitv3_xxs.voc",
               "ssdlite_mobilevitv3_xxs.coco"]
FIXTURE_DIRS = [Path(__file__).parent / "fixtures",
                Path(__file__).resolve().parents[2] / "shared" / "reference" / "fixtures"]

needs_onnx = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime not installed")


def load_fixture(name: str) -> dict:
    path = next((d / f"{name}.json" for d in FIXTURE_DIRS if (d / f"{name}.json").is_file()), None)
    if path is None:
        pytest.skip(f"fixture {name} not found in {[str(d) for d in FIXTURE_DIRS]}")
    return json.loads(path.read_text())


def flat(out) -> list[torch.Tensor]:
    return [out] if isinstance(out, torch.Tensor) else list(out)


def eager(model, x) -> list[torch.Tensor]:
    with torch.no_grad():
        return flat(model.eval()(x))


def ort_run(path, x) -> list[torch.Tensor]:
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return [torch.from_numpy(o) for o in session.run(None, {"image": x.numpy()})]


@pytest.fixture(scope="module")
def onnx_exports(tmp_path_factory):
    """Each ONNX model exported once (dynamic batch) for the tests below: {name: (model, path, report)}."""
    if importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("onnxruntime not installed")
    folder = tmp_path_factory.mktemp("onnx")
    out = {}
    for name in ONNX_MODELS:
        model = create_model(name).eval()
        path = folder / f"{name}.onnx"
        out[name] = model, path, export(model, "onnx", path, image_size=SMALL, dynamic_batch=True)
    return out


@pytest.mark.parametrize("name", ONNX_MODELS)
def test_onnx_export_matches_eager_at_batch_1_and_3(onnx_exports, name):
    model, path, report = onnx_exports[name]
    assert report["max_abs_diff"] <= 1e-4 and report["checked_inputs"] == [[1, 3, SMALL, SMALL], [3, 3, SMALL, SMALL]]
    for batch in (1, 3):  # checked here again, independently of the exporter's own check
        x = torch.rand(batch, 3, SMALL, SMALL, generator=torch.Generator().manual_seed(10 + batch))
        for got, ref in zip(ort_run(path, x), eager(model, x), strict=True):
            torch.testing.assert_close(got, ref, rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", ONNX_MODELS)
def test_onnx_export_is_opset_17_without_col2im(onnx_exports, name):
    import onnx
    proto = onnx.load(str(onnx_exports[name][1]))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) <= 17
    assert not {n.op_type for n in proto.graph.node} & {"Col2Im", "Im2Col"}


def test_onnx_metadata_holds_tag_preprocessing(onnx_exports):
    import onnx
    meta = {name: {p.key: p.value for p in onnx.load(str(onnx_exports[name][1])).metadata_props}
            for name in ONNX_MODELS}
    v1, v2, det = meta["mobilevitv3_xxs.in1k"], meta["mobilevitv3_050.in1k"], meta["ssdlite_mobilevitv3_xxs.coco"]
    assert (v1["channel_order"], v2["channel_order"]) == ("bgr", "rgb")  # v1 releases were trained on OpenCV BGR
    assert float(v1["scale"]) == pytest.approx(1 / 255)
    assert json.loads(v1["mean"]) == [0, 0, 0] and json.loads(v1["std"]) == [1, 1, 1]
    assert (json.loads(v1["resize"]), json.loads(v1["crop"]), v1["interpolation"]) == (288, 256, "bilinear")
    assert json.loads(v1["input_size"]) == [SMALL, SMALL] and v1["batch"] == "dynamic"
    assert json.loads(det["output_names"]) == ["class_logits", "box_regressions"]
    assert float(det["center_variance"]) == 0.1 and float(det["size_variance"]) == 0.2


@needs_onnx
def test_onnx_dynamic_size_runs_at_other_multiples(tmp_path):
    import onnx
    model = create_model("mobilevitv3_xxs.in1k").eval()
    step = size_multiple(model)
    assert step == 64  # stage 5 (stride 32) holds a MobileViT block: its map is even at multiples of 64
    path = tmp_path / "dyn.onnx"
    report = export(model, "onnx", path, image_size=step, dynamic_batch=True, dynamic_size=True)
    assert report["size_multiple"] == step and [3, 3, 2 * step, step] in report["checked_inputs"]
    assert max(o.version for o in onnx.load(str(path)).opset_import if o.domain in ("", "ai.onnx")) <= 17
    x = torch.rand(2, 3, step, 3 * step, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(ort_run(path, x)[0], eager(model, x)[0], rtol=0, atol=1e-4)


@needs_onnx
@pytest.mark.parametrize("name", ["mobilevitv3_xxs.in1k", "mobilevitv3_050.in1k"])
def test_onnx_export_of_official_checkpoint_keeps_official_outputs(tmp_path, name):
    fx = load_fixture(name)
    torch.save(official_state_dict(fx), tmp_path / "checkpoint_ema_best.pt")
    model = create_model(fx["name"], weights=str(tmp_path / "checkpoint_ema_best.pt"))
    for i, (x, expected) in enumerate(zip(inputs(fx), fx["outputs"], strict=True)):
        path = tmp_path / f"{i}.onnx"
        export(model, "onnx", path, image_size=tuple(x.shape[-2:]), batch_size=x.shape[0])
        torch.testing.assert_close(ort_run(path, x)[0], torch.tensor(expected["values"]), **fx["tolerance"])


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("fmt, load", [("torchscript", lambda p: torch.jit.load(str(p))),
                                       ("exported-program", lambda p: torch.export.load(str(p)).module())])
def test_torch_formats_round_trip_identically(tmp_path, fmt, load):
    model = create_model("ssdlite_mobilevitv3_xxs.coco").eval()
    path = tmp_path / f"model{FORMATS[fmt].suffix}"
    report = export(model, fmt, path, image_size=SMALL, dynamic_batch=True)
    assert report["max_abs_diff"] == 0.0 and report["path"] == str(path)
    loaded = load(path)
    x = torch.rand(3, 3, SMALL, SMALL, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        for got, ref in zip(flat(loaded(x)), eager(model, x), strict=True):
            assert torch.equal(got, ref)


@pytest.mark.parametrize("fmt, options", [("executorch", ["--dynamic-batch"]), ("tflite", [])])
def test_edge_formats_match_eager_in_their_runtime(tmp_path, fmt, options):
    """Through the CLI in its own process: the TFLite converter brings JAX and its threads, which must not live in
    the test process that later forks data-loader workers."""
    path = tmp_path / f"m{FORMATS[fmt].suffix}"
    proc = subprocess.run([sys.executable, "-m", "mobilevitv3", "export", "mobilevitv3_xxs.in1k", "--format", fmt,
                           "-o", str(path), "--image-size", str(SMALL), *options],
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]      # a missing runtime package fails here, never skips
    report = json.loads(proc.stdout)
    assert path.is_file() and report["max_abs_diff"] <= 1e-4
    assert len(report["checked_inputs"]) == (2 if options else 1)


def test_export_leaves_the_model_untouched(tmp_path):
    model = create_model("mobilevitv3_xxs").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export(model, "torchscript", tmp_path / "m.pt", image_size=SMALL)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


needs_coreml = pytest.mark.skipif(importlib.util.find_spec("coremltools") is None, reason="coremltools not installed")


@needs_coreml
@pytest.mark.parametrize("name, order", [("mobilevitv3_xxs.in1k", "bgr"), ("mobilevitv3_050.in1k", "rgb")])
def test_coreml_export_writes_ml_program_with_named_io_and_metadata(tmp_path, name, order):
    import coremltools as ct
    path = tmp_path / "m.mlpackage"
    report = export(create_model(name), "coreml", path, image_size=SMALL)
    spec = ct.utils.load_spec(str(path))
    assert spec.WhichOneof("Type") == "mlProgram"
    assert [i.name for i in spec.description.input] == ["image"]
    assert list(spec.description.input[0].type.multiArrayType.shape) == [1, 3, SMALL, SMALL]
    assert [o.name for o in spec.description.output] == ["logits"]
    assert spec.description.metadata.userDefined["channel_order"] == order
    ran = platform.system() == "Darwin"   # elsewhere nothing ran the file: the report must say so, not pass a number
    assert (report["max_abs_diff"] is not None) == ran
    assert ran or "prediction needs macOS" in report["runtime"]


@needs_coreml
@pytest.mark.skipif(platform.system() != "Darwin", reason="Core ML predicts on macOS only: the numerics of a CoreML "
                                                           "export cannot be compared on this OS")
def test_coreml_export_matches_eager_in_core_ml(tmp_path):
    report = export(create_model("mobilevitv3_xxs.in1k"), "coreml", tmp_path / "m.mlpackage", image_size=SMALL)
    assert report["max_abs_diff"] is not None and report["max_abs_diff"] <= 1e-3


# --- bad input: one clear error, nothing written -------------------------------------------------------------------

def test_export_rejects_unknown_format_naming_the_valid_ones(tmp_path):
    with pytest.raises(UserError, match="valid formats: onnx, torchscript, exported-program, coreml, executorch, "
                                        "tflite"):
        export(create_model("mobilevitv3_xxs"), "savedmodel", tmp_path / "m.pb")


def test_export_names_the_package_to_install_when_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(FORMATS, "onnx", dataclasses.replace(
        FORMATS["onnx"], requires=(("mobilevitv3_no_such_module", "no-such-package>=1.0"),)))
    with pytest.raises(UserError, match=r"needs the Python package no-such-package.*pip install 'no-such-package"):
        export(create_model("mobilevitv3_xxs"), "onnx", tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("size", [0, -64, 16, 31, (64,), (64, 31), (64, 64, 64), 64.0, (True, 64), "64"])
def test_export_rejects_image_sizes_the_model_cannot_take(tmp_path, size):
    with pytest.raises(UserError, match="image size"):
        export(create_model("mobilevitv3_xxs"), "torchscript", tmp_path / "m.pt", image_size=size)
    assert not list(tmp_path.iterdir())


def test_export_rejects_a_dynamic_size_off_the_size_step(tmp_path):
    with pytest.raises(UserError, match="multiple of 64"):
        export(create_model("mobilevitv3_xxs"), "exported-program", tmp_path / "m.pt2", image_size=(96, 64),
               dynamic_size=True)


@pytest.mark.parametrize("fmt, option", [("torchscript", "dynamic_size"), ("tflite", "dynamic_batch"),
                                         ("coreml", "dynamic_batch"), ("executorch", "fp16")])
def test_export_rejects_options_a_format_cannot_honour(tmp_path, monkeypatch, fmt, option):
    monkeypatch.setitem(FORMATS, fmt, dataclasses.replace(FORMATS[fmt], requires=()))  # reach the option check
    with pytest.raises(UserError, match=f"--{option.replace('_', '-')} is not supported"):
        export(create_model("mobilevitv3_xxs"), fmt, tmp_path / f"m{FORMATS[fmt].suffix}", **{option: True})


def test_export_rejects_unwritable_output_paths(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    for below_a_file in (tmp_path / "file" / "m.pt", tmp_path / "file" / "sub" / "m.pt"):
        with pytest.raises(UserError, match="is a file, not a folder"):
            export(create_model("mobilevitv3_xxs"), "torchscript", below_a_file, image_size=SMALL)
    with pytest.raises(UserError, match="is a folder"):
        export(create_model("mobilevitv3_xxs"), "torchscript", tmp_path, image_size=SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def _failing(write=None, open_=None) -> Backend:
    def write_then_fail(job, path):
        path.write_bytes(b"half a model")
        raise RuntimeError("exporter crashed")
    return Backend(write or write_then_fail, open_ or BACKENDS["torchscript"].open)


@pytest.mark.parametrize("backend, message", [
    (_failing(), "torchscript export of mobilevitv3_xxs failed: exporter crashed"),
    (_failing(write=BACKENDS["torchscript"].write,  # a file that loads but computes something else
              open_=lambda path, threads=None: Opened(lambda x: [torch.zeros(x.shape[0], 1000)], "wrong", {})),
     "differs from eager")])
def test_failed_export_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch, backend, message):
    monkeypatch.setitem(BACKENDS, "torchscript", backend)
    out = tmp_path / "m.pt"
    out.write_bytes(b"previous export")
    with pytest.raises(ExportError, match=message):
        export(create_model("mobilevitv3_xxs"), "torchscript", out, image_size=SMALL)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"] and out.read_bytes() == b"previous export"


def test_fuse_export_folds_real_batchnorm_statistics(tmp_path):
    model = create_model("mobilevitv3_xxs.in1k")
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():   # non-identity statistics: a fold that dropped mean or bias would be caught
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
    report = export(model, "torchscript", tmp_path / "m.pt", image_size=SMALL, fuse=True)
    module = torch.jit.load(str(tmp_path / "m.pt"))
    assert not any(m.original_name == "BatchNorm2d" for m in module.modules())
    x = torch.rand(1, 3, SMALL, SMALL)
    with torch.no_grad():
        torch.testing.assert_close(module(x), model.eval()(x), rtol=1e-4, atol=1e-4)
    assert report["fused"]


# --- command line --------------------------------------------------------------------------------------------------

def _parse(argv):
    import argparse

    from mobilevitv3.commands import export as command
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return command, parser.parse_args(argv)


@needs_onnx
def test_cli_export_writes_the_file_and_reports_the_difference(tmp_path):
    command, args = _parse(["mobilevitv3_050.in1k", "--format", "onnx", "--image-size", "64", "96",
                            "--dynamic-batch", "-o", str(tmp_path / "m.onnx")])
    report = command.run(args)
    json.dumps(report)  # JSON-able, as the CLI prints it
    assert report["image_size"] == [64, 96] and report["max_abs_diff"] <= 1e-4 and (tmp_path / "m.onnx").is_file()
    assert report["runtime"].startswith("onnxruntime")


def test_cli_export_errors_are_one_line(tmp_path, capsys):
    missing = [c for c in ("list", "ablation", "convert", "train", "eval", "predict", "bench", "export")
               if importlib.util.find_spec(f"mobilevitv3.commands.{c}") is None]
    if missing:
        pytest.skip(f"CLI commands not written yet: {missing}")
    from mobilevitv3.cli import main
    assert main(["export", "mobilevitv3_xxs", "--format", "pb", "-o", str(tmp_path / "m.pb")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "valid formats: onnx" in err


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "exported-program"])
def test_open_exported_runs_the_file_and_gives_back_its_metadata(tmp_path, fmt):
    if fmt == "onnx" and importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("onnxruntime not installed")
    model = create_model("mobilevitv3_xxs.in1k").eval()
    path = tmp_path / f"m{FORMATS[fmt].suffix}"
    report = export(model, fmt, path, image_size=SMALL, dynamic_batch=True)
    opened = open_exported(path, threads=1)
    assert opened.metadata == report["metadata"] and opened.runtime == report["runtime"]
    x = torch.rand(2, 3, SMALL, SMALL, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(opened.run(x)[0], eager(model, x)[0], rtol=0, atol=1e-4)


def test_open_exported_refuses_a_suffix_no_format_has(tmp_path):
    with pytest.raises(UserError, match=r"not an exported model \(expected one of \.onnx, \.pt, \.pt2"):
        open_exported(tmp_path / "m.bin")


@needs_onnx
def test_a_foreign_onnx_file_opens_without_metadata_and_is_refused_as_a_model(tmp_path):
    from mobilevitv3.infer.runtime import load_runtime_model
    path = tmp_path / "foreign.onnx"
    torch.onnx.export(torch.nn.Conv2d(3, 4, 1).eval(), (torch.rand(1, 3, 8, 8),), str(path), dynamo=False,
                      input_names=["x"])
    opened = open_exported(path)
    assert opened.metadata == {} and opened.run(torch.ones(1, 3, 8, 8))[0].shape == (1, 4, 8, 8)
    with pytest.raises(UserError, match="carries no mobilevitv3 metadata"):
        load_runtime_model(path)
