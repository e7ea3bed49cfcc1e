"""Every bad input a user can give: one line on stderr, exit code 2, no traceback, and no file written."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from PIL import Image

import mobilevitv3
from mobilevitv3.cli import main
from mobilevitv3.errors import UserError

T = ["train", "--epochs", "1", "--threads", "1"]


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.fixture
def place(tmp_path) -> Path:
    """A folder with what the cases need: an image, a one-class ImageFolder, a file, a 0-byte last.pt, a pickle
    carrying code."""
    Image.new("RGB", (40, 40), (200, 10, 10)).save(tmp_path / "img.png")
    for split in ("train", "val"):
        (tmp_path / "one" / split / "cat").mkdir(parents=True)
        Image.new("RGB", (36, 36)).save(tmp_path / "one" / split / "cat" / "0.png")
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"")
    torch.save({"model": {"w": torch.zeros(1)}, "x": Evil()}, tmp_path / "evil.pt")
    (tmp_path / "dup.yaml").write_text("lr: 0.1\nepochs: 1\nlr: 0.2\n")
    (tmp_path / "bool.yaml").write_text("batch_size: true\n")
    return tmp_path


CASES = {
    "unknown model": (T + ["--model", "mobilevitv3_xxss"], "did you mean mobilevitv3_xxs"),
    "image size 0": (T + ["--image-size", "0"], "image_size must be in"),
    "image size -5": (T + ["--image-size", "-5"], "image_size must be in"),
    "image size 1": (T + ["--image-size", "1"], "image_size must be in"),
    "rrc scale reversed": (T + ["--rrc-scale", "1,0"], "rrc_scale"),
    "label smoothing 2": (T + ["--label-smoothing", "2"], "label_smoothing"),
    "ema momentum 5": (T + ["--ema-momentum", "5"], "ema_momentum"),
    "max steps 0": (T + ["--max-steps-per-epoch", "0"], "max_steps_per_epoch"),
    "warmup -1": (T + ["--warmup-iterations", "-1"], "warmup_iterations"),
    "accum steps 1000": (T + ["--accum-steps", "1000"], "no optimiser step would be taken"),
    "lr inf": (T + ["--lr", "inf"], "lr must be a finite number"),
    "weight decay inf": (T + ["--weight-decay", "inf"], "weight_decay must be a finite number"),
    "mixup alpha inf": (T + ["--mixup-alpha", "inf"], "mixup_alpha must be a finite number"),
    "head lr multiplier inf": (T + ["--head-lr-multiplier", "inf"], "head_lr_multiplier must be a finite number"),
    "rrc ratio inf": (T + ["--rrc-ratio", "1,inf"], "rrc_ratio must be two finite numbers"),
    "recipe key twice": (T + ["-c", "{p}/dup.yaml"], "duplicate key 'lr' at line 3"),
    "recipe batch size true": (T + ["-c", "{p}/bool.yaml"], "bad value for batch_size: True"),
    "task bogus": (T + ["--task", "bogus"], "bad value for task: 'bogus'"),
    "task of another model": (T + ["--task", "segmentation"],
                              "--task segmentation does not fit --model mobilevitv3_xxs"),
    "eval batch 0": (T + ["--eval-batch-size", "0"], "eval_batch_size"),
    "threads 0": (T + ["--threads", "0"], "threads"),
    "num classes vs data": (T + ["--num-classes", "3"], "--num-classes 3, but digits has 10 classes"),
    "dense num classes 0": (T + ["--model", "deeplabv3_mobilevitv3_xxs", "--num-classes", "0"], "num_classes"),
    "one-class data": (T + ["--data", "{p}/one"], "at least 2 classes"),
    "out is a file": (T + ["--out", "{p}/a_file", "--max-steps-per-epoch", "1"], "is a file"),
    "empty last.pt": (T + ["--out", "{p}/run", "--resume"], "not a readable PyTorch checkpoint"),
    "device bogus": (T + ["--device", "bogus"], "unknown device 'bogus'"),
    "eval on cuda": (["eval", "mobilevitv3_xxs", "--weights", "{p}/evil.pt", "--data", "digits", "--device", "cuda"],
                     "CUDA is not available"),
    "list size 0": (["list", "--image-size", "0"], "--image-size"),
    "ablation size 0": (["ablation", "--image-size", "0"], "--image-size"),
    "predict top-k -1": (["predict", "mobilevitv3_xxs", "{p}/img.png", "--weights", "{p}/evil.pt", "--top-k", "-1"],
                         "--top-k"),
    "convert classes -3": (["convert", "{p}/evil.pt", "mobilevitv3_xxs", "-o", "{p}/x.safetensors",
                            "--num-classes", "-3"], "num_classes must be"),
    "code in a pickle": (["eval", "mobilevitv3_xxs", "--weights", "{p}/evil.pt", "--data", "digits"],
                         "refused: the file holds Python code"),
    "weights is a folder": (["eval", "mobilevitv3_xxs", "--weights", "{p}", "--data", "digits"], "is a folder"),
    "image is a folder": (["predict", "mobilevitv3_xxs", "{p}/one", "--weights", "{p}/evil.pt"], "is a folder"),
    "image missing": (["predict", "mobilevitv3_xxs", "{p}/nope.png", "--weights", "{p}/evil.pt"], "nope.png"),
    "export unknown tag": (["export", "mobilevitv3_xxs.foo", "--format", "onnx", "-o", "{p}/m.onnx"],
                           "unknown tag for mobilevitv3_xxs"),
    "checkpoint and weights": (["eval", "{p}/evil.pt", "--weights", "{p}/evil.pt", "--data", "digits"],
                               "either a checkpoint or NAME --weights"),
}


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, place, capsys, monkeypatch):
    monkeypatch.chdir(place)                      # the default --out (runs/train) would land here
    argv, expected = CASES[case]
    before = _tree(place)
    code = main([a.format(p=place) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err and expected in err, err
    assert "weights_only=False" not in err
    assert _tree(place) == before


@pytest.mark.parametrize("call,expected", [
    (lambda: mobilevitv3.create_model("mobilevitv3_xxs", head={"kind": "deeplabv3"}), "head settings are for"),
    (lambda: mobilevitv3.create_model("mobilevitv3_xxs", num_classes=-1), "num_classes must be >= 0"),
    (lambda: mobilevitv3.create_model("mobilevitv3_xxs", num_classes="10"), "must be an integer"),
    (lambda: mobilevitv3.create_model("deeplabv3_mobilevitv3_xxs", num_classes=0), "num_classes must be >= 2"),
    (lambda: mobilevitv3.get_tag("mobilevitv3_xxs.foo"), "unknown tag for mobilevitv3_xxs 'foo'"),
    (lambda: mobilevitv3.create_model("mobilevitv3_xxs", bogus=1), "unknown keyword argument"),
])
def test_python_api_bad_arguments_are_user_errors(call, expected):
    with pytest.raises(UserError, match=expected):
        call()


def test_untagged_dense_models_get_their_familys_head():
    v1 = mobilevitv3.create_model("deeplabv3_mobilevitv3_xxs")
    assert sum(p.numel() for p in v1.parameters()) == 1_956_309 and v1.aux_head is None     # the v1 VOC release
    ssd = mobilevitv3.create_model("ssdlite_mobilevitv3_xxs", in_chans=1)
    assert ssd.anchors(64, 64).shape[-1] == 4                                    # the anchor probe takes 1 channel


def test_a_flag_without_its_value_is_one_line_not_the_usage(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--epochs"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and err == ("mobilevitv3 train: error: argument --epochs: expected one argument "
                                              "(see mobilevitv3 train --help)")
