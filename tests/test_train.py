"""Training engine: config precedence and recipes, schedule, EMA, run outputs, resume, Ctrl-C, SIGKILL, non-finite
loss, eval/predict on our checkpoints, fine-tuning, and a real 2-process torchrun job (gloo, 1 thread each)."""
from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from mobilevitv3.cli import build_parser, main
from mobilevitv3.commands.train import overrides_from_args
from mobilevitv3.tasks.classification import Classification
from mobilevitv3.train.config import TrainConfig, resolve
from mobilevitv3.train.ema import ModelEMA
from mobilevitv3.train.optim import LRSchedule, param_groups

TINY = ["--model", "mobilevitv3_xxs", "--image-size", "32", "--batch-size", "4", "--eval-batch-size", "8",
        "--threads", "1", "--workers", "0", "--warmup-iterations", "2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def make_folder(root: Path, classes=("a", "b"), n_train=4, n_val=2) -> Path:
    for split, n in (("train", n_train), ("val", n_val)):
        for i, c in enumerate(classes):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for k in range(n):
                Image.new("RGB", (36, 36), (230 * (i == 0), 230 * (i == 1), 20 * k)).save(root / split / c / f"{k}.png")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("data"))


def train(out: Path, data: Path, *extra: str) -> int:
    return main(["train", *TINY, "--data", str(data), "--out", str(out), *extra])


def epochs_logged(out: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def run(tmp_path_factory, data) -> Path:
    out = tmp_path_factory.mktemp("run")
    assert train(out, data, "--epochs", "2") == 0
    return out


# ---- configuration and recipes ------------------------------------------------------------------------------
def test_config_precedence_defaults_recipe_flags():
    args = build_parser("train").parse_args(["train", "-c", "mobilevitv3_xxs.in1k", "--epochs", "7", "--hflip", "0.25"])
    cfg = resolve(args.recipe, overrides_from_args(args))
    assert (cfg.epochs, cfg.hflip) == (7, 0.25)                         # flags beat the recipe
    assert (cfg.warmup_iterations, cfg.batch_size) == (3000, 64)        # the recipe beats the defaults
    assert cfg.seed == TrainConfig().seed                               # untouched fields keep the default
    assert resolve(None, {"model": "mobilevitv3_100.in1k"}).warmup_iterations == 20000   # --model finds its recipe


def test_recipes_carry_the_official_values():
    v3 = resolve("mobilevitv3_xxs.in1k")
    assert (v3.optimizer, v3.lr, v3.min_lr, v3.warmup_init_lr, v3.weight_decay) == (
        "adamw", 0.002, 0.0002, 0.0002, 0.01)
    assert (v3.no_decay_bn_filter_bias, v3.label_smoothing, v3.ema_momentum, v3.epochs) == (False, 0.1, 0.0005, 300)
    assert (v3.sampler, v3.sampler_min_size, v3.sampler_max_size, v3.channel_order) == (
        "variable_batch", 160, 320, "bgr")
    assert v3.model_kwargs["dropout"] == 0.05 and resolve("mobilevitv3_s.in1k").batch_size == 32
    assert resolve("mobilevit_xs.in1k").batch_size == 128
    v2 = resolve("mobilevitv3_050.in1k")
    assert (v2.weight_decay, v2.no_decay_bn_filter_bias, v2.warmup_iterations, v2.warmup_init_lr) == (
        0.05, True, 20000, 1e-6)
    assert (v2.mixup_alpha, v2.cutmix_alpha, v2.random_erase, v2.grad_clip, v2.randaugment) == (
        0.2, 1.0, 0.25, 10.0, True)
    assert (v2.batch_size, v2.interpolation, v2.sampler, v2.channels_last) == (80, "bicubic", "fixed", True)
    assert resolve("mobilevitv2_100.in1k").batch_size == 128


def test_unknown_recipe_field_or_flag_value_is_a_clear_error(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("epoch: 3\n")
    assert main(["train", "-c", str(bad)]) == 2
    assert main(["train", *TINY, "--epochs", "three"]) == 2


def test_lr_warms_up_per_iteration_then_cosine_per_epoch():
    schedule = LRSchedule(TrainConfig(lr=0.002, min_lr=0.0002, warmup_iterations=3000, warmup_init_lr=0.0002,
                                      epochs=300))
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)

    def s(iteration: int, epoch: int) -> float:   # the lr the trainer sets before a batch
        lr = schedule.apply(optimizer, iteration, epoch)
        assert optimizer.param_groups[0]["lr"] == lr
        return lr
    assert s(0, 0) == 0.0002 and s(1500, 0) == pytest.approx(0.0011)
    assert s(3000, 10) == s(9000, 10) == round(0.0002 + 0.0009 * (1 + math.cos(math.pi * 10 / 300)), 8)
    assert s(10 ** 6, 299) > 0.0002 and s(10 ** 6, 150) == pytest.approx(0.0011)


def test_no_decay_group_holds_exactly_the_1d_parameters():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2))
    decay, no_decay = param_groups(model, TrainConfig(no_decay_bn_filter_bias=True, weight_decay=0.05))
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert (decay["weight_decay"], no_decay["weight_decay"], len(no_decay["params"])) == (0.05, 0.0, 4)
    assert len(param_groups(model, TrainConfig(no_decay_bn_filter_bias=False))) == 1


def test_ema_uses_official_momentum_over_parameters_and_buffers():
    model = torch.nn.BatchNorm1d(3)
    ema = ModelEMA(model, momentum=0.0005)
    with torch.no_grad():
        model.weight.fill_(3.0)
        model.running_mean.fill_(2.0)
    ema.update(model)
    assert torch.allclose(ema.module.weight, torch.full((3,), 0.9995 * 1 + 0.0005 * 3))
    assert torch.allclose(ema.module.running_mean, torch.full((3,), 0.0005 * 2))


# ---- a run and its files --------------------------------------------------------------------------------------
def test_run_writes_metrics_config_plot_and_safe_checkpoints(run):
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    for key in ("train_loss", "val_top1", "val_top5", "lr", "images_per_s", "ema_val_top1", "skipped_count",
                "val_skipped_count"):
        assert key in records[-1]
    assert (run / "config.yaml").is_file() and (run / "curves.png").stat().st_size > 1000
    last = torch.load(run / "last.pt", weights_only=True)
    assert (last["epoch"], last["step"], last["config"]["image_size"]) == (2, 0, 32)
    assert {"model", "ema", "optimizer", "scaler", "rng", "data_fingerprint", "identity"} <= last.keys()
    best = torch.load(run / "best.pt", weights_only=True)
    assert best["identity"]["class_names"] == ["a", "b"] and best["identity"]["arch"] == "mobilevitv3_xxs"


def test_resume_ends_with_exactly_the_requested_epochs(tmp_path, data):
    assert train(tmp_path, data, "--epochs", "1") == 0
    with open(tmp_path / "metrics.jsonl", "a") as f:       # a line whose checkpoint never got written (killed)
        f.write(json.dumps({"epoch": 2, "train_loss": 0}) + "\n")
    assert train(tmp_path, data, "--resume", "--epochs", "3") == 0
    assert epochs_logged(tmp_path) == [1, 2, 3]
    assert train(tmp_path, data, "--epochs", "3") == 2       # an existing run is not overwritten silently


def test_training_options_change_the_computation(tmp_path, data, monkeypatch):
    """bf16 autocast, channels-last, mixup/cutmix, clipping and accumulation each leave a measurable trace."""
    seen = {"layout": [], "dtype": [], "targets": [], "norms": []}
    loss_of = Classification.training_loss

    def spy_loss(self, model, batch, cfg):
        images, targets, _ = batch
        seen["layout"].append(images.is_contiguous(memory_format=torch.channels_last))
        seen["targets"].append(targets)
        seen["dtype"].append(model(images).dtype)                  # inside the trainer's autocast
        return loss_of(self, model, batch, cfg)

    step_of = torch.optim.AdamW.step

    def spy_step(self, *a, **k):
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        seen["norms"].append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))
        return step_of(self, *a, **k)
    monkeypatch.setattr(Classification, "training_loss", spy_loss)
    monkeypatch.setattr(torch.optim.AdamW, "step", spy_step)
    assert train(tmp_path, data, "--batch-size", "2", "--accum-steps", "2", "--amp", "bf16", "--channels-last",
                 "--randaugment", "--random-erase", "0.5", "--mixup-alpha", "0.2", "--cutmix-alpha", "1.0",
                 "--mix-prob", "1.0", "--grad-clip", "0.001", "--no-decay-bn-filter-bias", "--epochs", "1") == 0
    assert all(seen["layout"]) and set(seen["dtype"]) == {torch.bfloat16}
    soft = [t for t in seen["targets"] if t.ndim == 2]              # MixUp/CutMix: soft, mixed two-class targets
    assert len(soft) == len(seen["targets"]) and any(((t > 0) & (t < 1)).any() for t in soft)
    assert len(seen["norms"]) == len(seen["targets"]) // 2          # one optimiser step per two micro-batches
    assert max(seen["norms"]) <= 0.001 * 1.01                      # clipped to --grad-clip


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, data, monkeypatch, capsys):
    assert train(tmp_path, data, "--epochs", "1") == 0
    before = (tmp_path / "last.pt").read_bytes()
    real = Classification.training_loss
    monkeypatch.setattr(Classification, "training_loss",
                        lambda self, m, b, c: (lambda loss, s: (loss * float("nan"), s))(*real(self, m, b, c)))
    capsys.readouterr()
    assert train(tmp_path, data, "--resume", "--epochs", "2") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "non-finite loss" in err and "left as it was" in err
    assert (tmp_path / "last.pt").read_bytes() == before and epochs_logged(tmp_path) == [1]


def test_eval_and_predict_use_the_checkpoint_classes_and_sizes(run, data, capsys):
    capsys.readouterr()
    assert main(["eval", "mobilevitv3_xxs", "--weights", str(run / "best.pt"), "--data", str(data),
                 "--workers", "0"]) == 0
    result = json.loads(capsys.readouterr().out)
    best = torch.load(run / "best.pt", weights_only=True)
    key = "val_top1" if best.get("source", "model") == "model" else "ema_val_top1"
    assert result["images"] == 4 and result["top1"] == pytest.approx(best["metrics"][key])   # the epoch's own score
    image = next((data / "val" / "a").iterdir())
    assert main(["predict", "mobilevitv3_xxs", "--weights", str(run / "best.pt"), str(image)]) == 0
    top = json.loads(capsys.readouterr().out)[0]["top"]
    assert {t["name"] for t in top} == {"a", "b"} and sum(t["prob"] for t in top) == pytest.approx(1, abs=1e-4)


def test_finetune_from_weights_resets_the_classifier(run, tmp_path, caplog):
    three = make_folder(tmp_path / "d3", classes=("x", "y", "z"), n_train=2, n_val=1)
    with caplog.at_level(logging.INFO):
        assert train(tmp_path / "ft", three, "--weights", str(run / "best.pt"), "--epochs", "1") == 0
    assert "classifier reset to 3 classes" in caplog.text
    assert torch.load(tmp_path / "ft" / "best.pt", weights_only=True)["model"]["fc.bias"].shape == (3,)


def test_bad_data_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["train", *TINY, "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == f"mobilevitv3 train: error: data directory not found: {tmp_path / 'nope'}"


# ---- processes: SIGKILL, Ctrl-C, torchrun ----------------------------------------------------------------------
def _spawn(out: Path, data: Path, *extra: str, prefix: tuple[str, ...] = ("-m", "mobilevitv3")) -> subprocess.Popen:
    cmd = [sys.executable, *prefix, "train", *TINY, "--data", str(data), "--out", str(out), *extra]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    end = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() < end, "timed out"
        time.sleep(0.05)


def test_ctrl_c_saves_last_pt_and_exits_130(tmp_path, data):
    proc = _spawn(tmp_path, data, "--epochs", "1000")
    _wait_for(tmp_path / "metrics.jsonl", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    assert (saved["epoch"], saved["step"]) > (0, 0)            # saved at the step it stopped, maybe mid-epoch
    assert train(tmp_path, data, "--resume", "--epochs", str(saved["epoch"] + 1)) == 0
    assert epochs_logged(tmp_path) == list(range(1, saved["epoch"] + 2))


def test_torchrun_two_processes_on_cpu(tmp_path, data):
    proc = _spawn(tmp_path, data, "--epochs", "1", "--sampler", "variable_batch", "--sampler-min-size", "32",
                  "--sampler-max-size", "64", "--sampler-scales", "2",
                  prefix=("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "mobilevitv3"))
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    record = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert record["epoch"] == 1 and record["val_images"] == 4 and record["images_per_s"] > 0
    assert json.loads(out)["epochs"] == 1                      # one summary, from rank 0 only


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_trainer_memory_policy_stops_page_faults_on_reused_blocks():
    """`keep_freed_memory` (set by the trainer on CPU, never on import): a 48 MiB block freed and allocated again
    comes back from the heap instead of as fresh pages (glibc maps anything above 32 MiB anew every time): 10
    allocations fault ~10 blocks of pages by default, at most one or two with the policy."""
    code = ("import resource, sys, torch\n"
            "from mobilevitv3.train.distributed import keep_freed_memory\n"
            "if sys.argv[1] == 'keep': assert keep_freed_memory()\n"
            "faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
            "torch.ones(48 << 20, dtype=torch.uint8)\n"
            "before = faults()\n"
            "for _ in range(10): torch.ones(48 << 20, dtype=torch.uint8)\n"
            "print(faults() - before)\n")
    counts = {mode: int(subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True,
                                       check=True).stdout.split()[-1]) for mode in ("default", "keep")}
    assert counts["default"] > 10 * 10_000 and counts["keep"] <= 2 * 12_288, counts   # 12,288 pages = 48 MiB
