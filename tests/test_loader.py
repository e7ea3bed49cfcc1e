"""The one loader (`mobilevitv3.infer.load`): every command reads each input file once; a checkpoint and every file
made from it say the size the run evaluated at (issue 19, item 2), and the exports follow it; misuse of the library
and of exported files is one line (items 11 and 12)."""
from __future__ import annotations

import builtins
import json
import os
from pathlib import Path

import pytest
import torch

import mobilevitv3
from mobilevitv3 import UserError
from mobilevitv3.cli import main

RUN = ["--model", "mobilevitv3_xxs", "--data", "digits", "--image-size", "64", "--epochs", "1",
       "--max-steps-per-epoch", "2", "--batch-size", "4", "--eval-batch-size", "64", "--threads", "1",
       "--workers", "0", "--warmup-iterations", "1"]


@pytest.fixture(scope="module")
def run64(tmp_path_factory) -> Path:
    """A 64 px digits run (the library default), as in the issue: its best.pt is what every test here reads."""
    out = tmp_path_factory.mktemp("run64")
    assert main(["train", *RUN, "--out", str(out)]) == 0
    return out / "best.pt"


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def _count_opens(monkeypatch, path: Path) -> list[str]:
    """Every open of `path` (torch.load and safetensors open files through it; so does any re-read)."""
    opened: list[str] = []
    real = builtins.open

    def counting(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and Path(file).resolve() == path.resolve():
            opened.append(str(file))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting)
    return opened


# ---- each file read once ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [
    ["eval", "{ckpt}", "--data", "digits", "--workers", "0"],
    ["export", "{ckpt}", "--format", "onnx", "-o", "{out}.onnx"],
    ["quantize", "{ckpt}", "--calib", "digits", "--calib-images", "8", "--format", "onnx", "-o", "{out}.onnx"],
    ["predict", "{ckpt}", "{image}"],
], ids=["eval", "export", "quantize", "predict"])
def test_each_command_reads_the_checkpoint_once(command, run64, tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    image = tmp_path / "digit.png"
    from PIL import Image
    Image.new("RGB", (40, 40), (200, 10, 10)).save(image)
    args = [a.format(ckpt=run64, out=tmp_path / "m", image=image) for a in command]
    opened = _count_opens(monkeypatch, run64)
    assert main(args) == 0
    assert len(opened) == 1, opened


def test_name_with_weights_reads_the_weights_once(run64, tmp_path, monkeypatch):
    opened = _count_opens(monkeypatch, run64)
    model, settings = mobilevitv3.infer.load("mobilevitv3_xxs", run64)
    assert len(opened) == 1 and model.num_classes == 10 and settings.eval_crop == 64


# ---- the identity records the size the run evaluated at (issue 19, item 2) --------------------------------------
def test_checkpoint_identity_records_the_eval_size(run64):
    ident = torch.load(run64, weights_only=True)["identity"]
    assert ident["preprocess"]["crop"] == 64 and ident["preprocess"]["resize"] == 72
    assert ident["preprocess_from"] == "training"
    assert mobilevitv3.load_model(str(run64)).identity.eval_size == (64, 64)


def test_export_follows_the_checkpoint_and_its_file_evaluates(run64, tmp_path, capsys):
    """export defaults to the run's 64 px; eval and predict of the exported file then give the checkpoint's answer."""
    pytest.importorskip("onnxruntime")
    onnx_file = tmp_path / "m.onnx"
    capsys.readouterr()
    assert main(["export", str(run64), "--format", "onnx", "-o", str(onnx_file)]) == 0
    report = _json(capsys)
    meta = report["metadata"]
    assert report["image_size"] == [64, 64] and json.loads(meta["crop"]) == 64 and json.loads(meta["resize"]) == 72
    assert main(["eval", str(run64), "--data", "digits", "--workers", "0"]) == 0
    eager = _json(capsys)
    assert main(["eval", str(onnx_file), "--data", "digits", "--workers", "0"]) == 0
    exported = _json(capsys)
    assert exported["images"] == eager["images"] > 0 and exported["top1"] == pytest.approx(eager["top1"])
    image = tmp_path / "digit.png"
    from PIL import Image
    Image.new("RGB", (48, 40), (10, 200, 10)).save(image)
    assert main(["predict", str(onnx_file), str(image)]) == 0
    assert main(["predict", str(run64), str(image)]) == 0
    out = capsys.readouterr().out
    first, second = (json.loads(part) for part in out.replace("]\n[", "]\n\n[").split("\n\n"))
    assert first[0]["top"][0]["class"] == second[0]["top"][0]["class"]


def test_quantized_file_of_the_run_evaluates(run64, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "q.onnx"
    assert main(["quantize", str(run64), "--calib", "digits", "--calib-images", "8", "--format", "onnx",
                 "-o", str(out)]) == 0
    assert _json(capsys)["image_size"] == [64, 64]
    assert main(["eval", str(out), "--data", "digits", "--workers", "0"]) == 0
    assert _json(capsys)["images"] == 360


# ---- one line for misuse (issue 19, items 11 and 12) -------------------------------------------------------------
@pytest.mark.parametrize("call", [
    lambda: mobilevitv3.create_model(None),
    lambda: mobilevitv3.create_model(123),
    lambda: mobilevitv3.create_model("mobilevitv3_xxs", in_chans=-1),
    lambda: mobilevitv3.create_model("mobilevitv3_xxs", in_chans=0),
    lambda: mobilevitv3.create_model("mobilevitv3_xxs", copy="bogus"),
    lambda: mobilevitv3.load_model(None),
], ids=["name-None", "name-int", "in_chans-negative", "in_chans-zero", "copy-bogus", "load_model-None"])
def test_library_misuse_is_one_user_error(call):
    with pytest.raises(UserError) as info:
        call()
    assert len(str(info.value).splitlines()) == 1


def test_copy_bogus_is_refused_for_a_file_too(run64):
    with pytest.raises(UserError, match="copy must be"):
        mobilevitv3.load_model(str(run64), copy="bogus")


def _one_line_without_unsafe_advice(err: str) -> None:
    assert len(err.strip().splitlines()) == 1, err
    assert "weights_only" not in err and "exported model" in err


def test_eval_of_a_torchscript_export_names_it_without_unsafe_advice(run64, tmp_path, capsys):
    ts = tmp_path / "m.pt"
    assert main(["export", str(run64), "--format", "torchscript", "-o", str(ts)]) == 0
    capsys.readouterr()
    assert main(["eval", str(ts), "--data", "digits", "--workers", "0"]) == 2
    _one_line_without_unsafe_advice(capsys.readouterr().err)


def test_load_model_of_an_onnx_file_gives_no_unsafe_advice(tmp_path):
    fake = tmp_path / "x.onnx"
    fake.write_bytes(b"\x08\x07not a pickle")
    with pytest.raises(UserError) as info:
        mobilevitv3.load_model(str(fake))
    _one_line_without_unsafe_advice(str(info.value))


def test_quantize_to_a_name_of_another_format_is_refused_before_writing(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "q.pte"
    capsys.readouterr()
    assert main(["quantize", "mobilevitv3_xxs", "--calib", "digits", "--format", "onnx", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and ".onnx" in err
    assert not out.exists() and not list(tmp_path.glob(".q.pte*"))
