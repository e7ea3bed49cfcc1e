"""The chains a user runs, through the CLI, on data made here: train -> eval -> export from the checkpoint alone ->
onnxruntime gives eval's answer -> predict; a classifier checkpoint -> a dense model's backbone; stop (Ctrl-C or
SIGKILL at several points, one inside a checkpoint write) -> --resume ends with the uninterrupted run's weights."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mobilevitv3
from mobilevitv3.cli import main
from mobilevitv3.data.transforms import eval_transform, pipeline
from mobilevitv3.train.config import TrainConfig
from mobilevitv3.train.run_folder import RunFolder
from mobilevitv3.train.trainer import Trainer

TINY = ["--model", "mobilevitv3_xxs", "--image-size", "32", "--batch-size", "4", "--eval-batch-size", "8",
        "--threads", "1", "--warmup-iterations", "2", "--ema-momentum", "0.1"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def make_folder(root: Path, classes=("a", "b", "c"), n_train=6, n_val=3) -> Path:
    for split, n in (("train", n_train), ("val", n_val)):
        for i, c in enumerate(classes):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for k in range(n):
                rgb = [(200 + 5 * k) * (j == i) + 10 * k for j in range(3)]
                Image.new("RGB", (36, 40), tuple(rgb)).save(root / split / c / f"{k}.png")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("data"))


def train(out: Path, data: Path, *extra: str) -> int:
    return main(["train", *TINY, "--data", str(data), "--out", str(out), "--workers", "0", *extra])


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "last.pt", weights_only=True)["model"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert different == []


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data) -> Path:
    """The uninterrupted run every stopped-and-resumed run must reproduce."""
    out = tmp_path_factory.mktemp("reference")
    assert train(out, data, "--epochs", "3") == 0
    return out


# ---- the classification chain ---------------------------------------------------------------------------------
def test_chain_train_eval_export_onnxruntime_predict(reference, data, tmp_path, capsys):
    capsys.readouterr()
    best = reference / "best.pt"
    assert main(["eval", str(best), "--data", str(data), "--workers", "0"]) == 0    # the checkpoint alone
    evaluated = json.loads(capsys.readouterr().out)
    onnx_file = tmp_path / "m.onnx"
    assert main(["export", str(best), "--format", "onnx", "-o", str(onnx_file), "--image-size", "32"]) == 0
    meta = json.loads(capsys.readouterr().out)["metadata"]
    assert json.loads(meta["class_names"]) == ["a", "b", "c"] and meta["channel_order"] == "bgr"

    import onnxruntime as ort
    model, _ = mobilevitv3.infer.load(str(best))
    transform = eval_transform(pipeline(TrainConfig(model="mobilevitv3_xxs", image_size=32), model))
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    hits = total = 0
    for i, c in enumerate(("a", "b", "c")):
        for path in sorted((data / "val" / c).iterdir()):
            x = transform(Image.open(path).convert("RGB"))[None].numpy()
            hits += int(np.argmax(session.run(None, {"image": x})[0]) == i)
            total += 1
    assert total == evaluated["images"] and 100 * hits / total == pytest.approx(evaluated["top1"])

    image = str(data / "val" / "b" / "0.png")
    assert main(["predict", str(best), image, "--top-k", "2"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert len(result["top"]) == 2 and result["top"][0]["name"] in ("a", "b", "c")


def test_chain_classifier_checkpoint_initialises_a_segmenter_backbone(reference, tmp_path, caplog):
    from dense_data import make_voc
    best = reference / "best.pt"
    classifier = torch.load(best, weights_only=True)["model"]
    seg = mobilevitv3.create_model("deeplabv3_mobilevitv3_xxs", weights=str(best))
    backbone = seg.backbone.state_dict()
    assert backbone.keys() == {k for k in classifier if not k.startswith(("fc.", "final_conv."))}
    assert all(torch.equal(backbone[k], classifier[k]) for k in backbone)
    voc = make_voc(tmp_path / "VOCdevkit" / "VOC2012", n_train=2, n_val=1)
    with caplog.at_level("INFO"):
        assert main(["train", "--model", "deeplabv3_mobilevitv3_xxs", "--weights", str(best), "--data", str(voc),
                     "--out", str(tmp_path / "seg"), "--image-size", "64", "--batch-size", "2", "--epochs", "1",
                     "--threads", "1", "--max-steps-per-epoch", "1"]) == 0
    assert any("loaded the backbone" in r.message for r in caplog.records)
    assert main(["eval", str(tmp_path / "seg" / "best.pt"), "--data", str(voc), "--workers", "0"]) == 0


def test_a_checkpoint_of_another_backbone_is_refused_in_one_line(reference, tmp_path, capsys):
    from dense_data import make_voc
    voc = make_voc(tmp_path / "VOCdevkit" / "VOC2012", n_train=2, n_val=1)
    assert main(["train", "--model", "deeplabv3_mobilevitv3_050", "--weights", str(reference / "best.pt"),
                 "--data", str(voc), "--out", str(tmp_path / "o"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not a backbone of deeplabv3_mobilevitv3_050" in err
    assert not (tmp_path / "o").exists()


def test_weights_copy_is_explicit_and_logged(reference, caplog):
    with caplog.at_level("INFO"):
        raw = mobilevitv3.create_model("mobilevitv3_xxs", weights=str(reference / "last.pt"))
        ema = mobilevitv3.create_model("mobilevitv3_xxs", weights=str(reference / "last.pt"), copy="ema")
    saved = torch.load(reference / "last.pt", weights_only=True)
    assert torch.equal(raw.fc.weight, saved["model"]["fc.weight"]) and torch.equal(ema.fc.weight,
                                                                                   saved["ema"]["fc.weight"])
    assert not torch.equal(raw.fc.weight, ema.fc.weight)
    assert [r.message.split()[1] for r in caplog.records if r.message.startswith("loaded")] == ["model", "ema"]


# ---- stop -> resume gives the uninterrupted run's weights -------------------------------------------------------
def _interrupt_after(monkeypatch, steps: int) -> None:
    original, calls = Trainer._optimizer_step, [0]

    def step(self):
        original(self)
        calls[0] += 1
        if calls[0] == steps:
            os.kill(os.getpid(), signal.SIGINT)     # the real Ctrl-C path: handler, save at the step boundary
    monkeypatch.setattr(Trainer, "_optimizer_step", step)


@pytest.mark.parametrize("stop_at", [2, 5, 7])      # steps per epoch: 5 (18 images / 4): mid-epoch and at a boundary
def test_ctrl_c_then_resume_gives_the_uninterrupted_weights(stop_at, reference, data, tmp_path, monkeypatch):
    _interrupt_after(monkeypatch, stop_at)
    assert train(tmp_path, data, "--epochs", "3") == 130
    monkeypatch.undo()
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    assert saved["iteration"] == stop_at + 1          # the flag is read with the next step's finite check
    assert train(tmp_path, data, "--epochs", "3", "--resume") == 0
    assert_same_weights(final_weights(tmp_path), final_weights(reference))


def test_dataloader_workers_do_not_change_the_result(reference, data, tmp_path):
    assert main(["train", *TINY, "--data", str(data), "--out", str(tmp_path), "--workers", "2",
                 "--epochs", "3"]) == 0
    assert_same_weights(final_weights(tmp_path), final_weights(reference))


KILLER = textwrap.dedent("""
    import os, signal, sys, torch
    from mobilevitv3.cli import main
    from mobilevitv3.train.trainer import Trainer
    where, n = sys.argv[1], int(sys.argv[2])
    calls = [0]
    def hit():
        calls[0] += 1
        if calls[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)
    if where == "write":                  # half a checkpoint on disk, then killed inside the atomic write
        save = torch.save
        def partial(obj, f, *a, **k):
            if isinstance(obj, dict) and "optimizer" in obj and calls[0] + 1 == n:     # that last.pt write
                f.write(b"half a checkpoint"); f.flush(); hit()
            elif isinstance(obj, dict) and "optimizer" in obj:
                calls[0] += 1
            return save(obj, f, *a, **k)
        torch.save = partial
    elif where == "step":
        step = Trainer._optimizer_step
        Trainer._optimizer_step = lambda self: (step(self), hit())
    elif where == "eval":
        ev = Trainer._evaluate
        Trainer._evaluate = lambda self, m: (hit(), ev(self, m))[1]
    sys.exit(main(sys.argv[3:]))
""")


@pytest.mark.parametrize("where,n", [("write", 2), ("step", 8), ("eval", 3)])
def test_sigkill_anywhere_then_resume_gives_the_uninterrupted_weights(where, n, reference, data, tmp_path):
    args = ["train", *TINY, "--data", str(data), "--out", str(tmp_path), "--workers", "0", "--epochs", "3"]
    proc = subprocess.run([sys.executable, "-c", KILLER, where, str(n), *args], env=ENV, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    saved = torch.load(tmp_path / "last.pt", weights_only=True)     # whatever was on disk is a whole checkpoint
    assert saved["step"] == 0 and saved["epoch"] >= 1
    assert len(list(tmp_path.glob(".last.pt.*.tmp"))) == (where == "write")   # the killed write's leftover
    assert train(tmp_path, data, "--epochs", "3", "--resume") == 0
    assert list(tmp_path.glob(".*.tmp")) == []
    assert [json.loads(line)["epoch"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert_same_weights(final_weights(tmp_path), final_weights(reference))


# ---- one writer per run folder, resume refuses another run ------------------------------------------------------
def test_a_locked_run_folder_is_refused_in_one_line(data, tmp_path, capsys):
    with RunFolder(tmp_path):
        assert train(tmp_path, data, "--epochs", "1") == 2
    err = capsys.readouterr().err.strip()
    assert "is being written by another run" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "metrics.jsonl").exists()


def test_resume_refuses_other_data_or_model(reference, data, tmp_path, capsys):
    other = make_folder(tmp_path / "other", classes=("a", "b"))
    run = tmp_path / "run"
    assert train(run, data, "--epochs", "1") == 0
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    capsys.readouterr()
    assert train(run, other, "--epochs", "2", "--resume") == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--model", "mobilevitv3_xs", "--data", str(data), "--out", str(run), "--resume",
                 "--image-size", "32"]) == 2
    assert "mobilevitv3_xxs" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.name != ".lock"} == \
           {k: v for k, v in before.items() if k != ".lock"}


def test_run_files_follow_the_umask(data, tmp_path):
    old = os.umask(0o022)
    try:
        assert train(tmp_path, data, "--epochs", "1", "--max-steps-per-epoch", "1") == 0
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir() if p.is_file()}
    assert modes and set(modes.values()) == {0o644}
