"""Runs that survive a cluster, as a user or operator meets them: a resume before the first checkpoint, torchrun
restarts, a mid-epoch stop of a 2-process job (resumed exactly, refused on 1 process), signals to the process group
with loader workers, a node-local --out, symlink loops, a full disk and a validation set with nothing to score.
torchrun jobs run 2 processes of 1 thread each on gloo."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from mobilevitv3.cli import main

TINY = ["--model", "mobilevitv3_xxs", "--image-size", "32", "--batch-size", "2", "--eval-batch-size", "8",
        "--threads", "1", "--warmup-iterations", "2", "--workers", "0"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def make_folder(root: Path, classes=("a", "b"), n_train=6, n_val=2) -> Path:
    for split, n in (("train", n_train), ("val", n_val)):
        for i, c in enumerate(classes):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for k in range(n):
                Image.new("RGB", (36, 36), (220 * (i == 0), 220 * (i == 1), 30 * k)).save(root / split / c / f"{k}.png")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("data"))


def train_args(out: Path, data: Path, *extra: str) -> list[str]:
    return ["train", *TINY, "--data", str(data), "--out", str(out), *extra]


def epochs_logged(out: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def one_line(err: str, expected: str) -> None:
    lines = err.strip().splitlines()
    assert lines and expected in lines[-1] and "Traceback" not in err, err[-3000:]


# A training process that hurts itself at optimiser step N, from inside (the points are exact, not timed):
# `kill SIG` sends SIG to itself (SIGKILL: no save; SIGTERM: the scheduler's stop), only in the first torchrun
# attempt and on the given rank; `full` makes the Nth write of last.pt meet a full disk (/dev/full: ENOSPC).
HURT = textwrap.dedent("""
    import os, signal, sys, tempfile
    from mobilevitv3.cli import main
    from mobilevitv3.train.trainer import Trainer
    from mobilevitv3.weights import write
    how, n, rank = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    first = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0" and os.environ.get("RANK", "0") == rank
    calls = [0]
    if how == "full":
        real = tempfile.mkstemp
        def mkstemp(*a, prefix="", **k):
            fd, name = real(*a, prefix=prefix, **k)
            calls[0] += prefix.startswith(".last.pt.")
            if prefix.startswith(".last.pt.") and calls[0] == n:
                os.close(fd)
                fd = os.open("/dev/full", os.O_WRONLY)
            return fd, name
        write.tempfile.mkstemp = mkstemp
    else:
        sig = getattr(signal, how)
        step = Trainer._optimizer_step
        def hurt(self):
            step(self)
            calls[0] += 1
            if first and calls[0] == n:
                os.kill(os.getpid(), sig)
        Trainer._optimizer_step = hurt
    sys.exit(main(sys.argv[4:]))
""")


def hurt(tmp: Path, how: str, n: int, args: list[str], *, rank: int = 0, torchrun: tuple[str, ...] = (),
         timeout: float = 240) -> subprocess.CompletedProcess:
    script = tmp / "hurt.py"
    script.write_text(HURT)
    cmd = [*torchrun, str(script)] if torchrun else [sys.executable, str(script)]
    return subprocess.run([*cmd, how, str(n), str(rank), *args], env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "last.pt", weights_only=True)["model"]


def differing(a: dict, b: dict) -> list[str]:
    return [k for k in a if not torch.equal(a[k], b[k])]


# ---- resume reads the run's own job -----------------------------------------------------------------------------
def test_resume_before_the_first_checkpoint_trains_the_runs_own_job(data, tmp_path):
    out = tmp_path / "run"
    job = train_args(out, data, "--epochs", "2", "--lr", "0.01", "--image-size", "40", "--max-steps-per-epoch", "3")
    proc = hurt(tmp_path, "SIGKILL", 1, job)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not (out / "last.pt").exists()
    before = yaml.safe_load((out / "config.yaml").read_text())
    assert main(["train", "--out", str(out), "--resume", "--threads", "1"]) == 0     # as the README shows
    saved = torch.load(out / "last.pt", weights_only=True)["config"]
    assert (saved["data"], saved["lr"], saved["image_size"], saved["epochs"]) == (str(data), 0.01, 40, 2)
    assert yaml.safe_load((out / "config.yaml").read_text()) == before | {"resume": True}
    assert epochs_logged(out) == [1, 2]


def test_resume_refuses_another_model_before_the_first_checkpoint(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert hurt(tmp_path, "SIGKILL", 1, train_args(out, data, "--epochs", "1")).returncode == -signal.SIGKILL
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(["train", "--out", str(out), "--resume", "--model", "mobilevitv3_xs"]) == 2
    one_line(capsys.readouterr().err, "the run was made with --model mobilevitv3_xxs, not --model mobilevitv3_xs")
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before            # nothing written


# ---- torchrun: restarts, per-rank state, one folder ---------------------------------------------------------------
def test_torchrun_restart_continues_its_run_without_resume(data, tmp_path):
    out = tmp_path / "run"
    args = train_args(out, data, "--epochs", "2")           # 12 images / (2 x 2): 3 steps an epoch
    proc = hurt(tmp_path, "SIGKILL", 4, args, rank=1, torchrun=(*TORCHRUN, "--max-restarts", "1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "continuing its run" in proc.stderr
    assert epochs_logged(out) == [1, 2]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, data) -> Path:
    """The uninterrupted 2-process run that a stopped and resumed one must reproduce."""
    out = tmp_path_factory.mktemp("ddp_reference")
    proc = subprocess.run([*TORCHRUN, "-m", "mobilevitv3", *train_args(out, data, "--epochs", "2")], env=ENV,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_mid_epoch_stop_of_two_processes_resumes_exactly_and_only_on_two(two_process_run, data, tmp_path, capsys):
    out = tmp_path / "run"
    stopped = hurt(tmp_path, "SIGTERM", 4, train_args(out, data, "--epochs", "2"), torchrun=TORCHRUN)
    assert stopped.returncode != 0 and "interrupted (SIGTERM)" in stopped.stderr, stopped.stderr[-3000:]
    saved = torch.load(out / "last.pt", weights_only=True)
    # the signal after epoch 2's first step is acted on after its second, one step before the epoch ends
    assert (saved["epoch"], saved["step"], saved["world"], len(saved["rng"])) == (1, 2, 2, 2)
    assert not torch.equal(saved["rng"][0]["torch"], saved["rng"][1]["torch"])
    capsys.readouterr()
    assert main(train_args(out, data, "--epochs", "2", "--resume")) == 2                   # one process
    one_line(capsys.readouterr().err, "saved in the middle of epoch 2 by 2 process(es)")
    resumed = subprocess.run([*TORCHRUN, "-m", "mobilevitv3", *train_args(out, data, "--epochs", "2", "--resume")],
                             env=ENV, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert differing(weights(out), weights(two_process_run)) == []


def test_a_folder_that_is_not_shared_by_every_rank_is_refused_before_training(data, tmp_path):
    """Each rank in its own working directory with a relative --out: as two nodes with node-local disks."""
    for rank in (0, 1):
        (tmp_path / f"node{rank}").mkdir()
    script = tmp_path / "node_local.py"
    script.write_text("import os, sys\nfrom mobilevitv3.cli import main\n"
                      "os.chdir(os.path.join(sys.argv[1], 'node' + os.environ['LOCAL_RANK']))\n"
                      "sys.exit(main(sys.argv[2:]))\n")
    proc = subprocess.run([*TORCHRUN, str(script), str(tmp_path), *train_args(Path("run"), data, "--epochs", "1")],
                          env=ENV, capture_output=True, text=True, timeout=240)
    assert proc.returncode != 0
    assert proc.stderr.count("is not one folder for every process: rank(s) 1") == 2, proc.stderr[-3000:]
    assert not (tmp_path / "node0" / "run" / "metrics.jsonl").exists()
    assert not (tmp_path / "node1" / "run").exists()


# ---- signals to the process group, with loader workers ------------------------------------------------------------
def _spawn_group(out: Path, data: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mobilevitv3", *train_args(out, data, *extra)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def epoch_done(out: Path) -> bool:
    return (out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").stat().st_size > 0


def _wait_for(check, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.time() + timeout
    while not check():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < end, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_stop_signal_to_the_process_group_saves_and_exits_128_plus_signal(sig, code, data, tmp_path):
    proc = _spawn_group(tmp_path, data, "--epochs", "1000", "--workers", "2")
    _wait_for(lambda: epoch_done(tmp_path), proc)
    os.killpg(proc.pid, sig)                            # the trainer and both loader workers
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-3000:]
    one_line(err, f"interrupted ({sig.name})")
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    assert saved["epoch"] >= 1 and saved["step"] > 0     # saved where it stopped, after epoch 1's checkpoint


def test_sigusr1_saves_mid_epoch_and_training_continues(data, tmp_path):
    proc = _spawn_group(tmp_path, data, "--epochs", "1000", "--workers", "1")
    last, seen = tmp_path / "last.pt", [None]
    _wait_for(last.exists, proc)
    os.killpg(proc.pid, signal.SIGUSR1)

    def saved_mid_epoch() -> bool:    # every new last.pt read once; epoch-end ones have step 0
        mtime = last.stat().st_mtime_ns
        seen[0], new = mtime, mtime != seen[0]
        return new and torch.load(last, weights_only=True)["step"] > 0
    _wait_for(saved_mid_epoch, proc)
    time.sleep(1.0)
    assert proc.poll() is None                          # still training
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "step" in [line for line in err.splitlines() if line.endswith("(SIGUSR1)")][0]


# ---- data, disk, scores -------------------------------------------------------------------------------------------
def test_symlink_loops_are_followed_once(data, tmp_path):
    looped = make_folder(tmp_path / "looped")
    (looped / "train" / "a" / "self").symlink_to(looped / "train" / "a")
    (looped / "train" / "b" / "up").symlink_to(looped / "train")
    (looped / "val" / "a" / "same").symlink_to(looped / "val" / "a" / "0.png")
    out = tmp_path / "run"
    assert main(train_args(out, looped, "--epochs", "1", "--max-steps-per-epoch", "1")) == 0
    found = torch.load(out / "last.pt", weights_only=True)["data_fingerprint"]
    assert (found["train_files"], found["val_files"]) == (12, 4)


def test_full_disk_is_one_line_and_loses_nothing(data, tmp_path):
    out = tmp_path / "run"
    args = train_args(out, data, "--epochs", "2", "--max-steps-per-epoch", "2")
    proc = hurt(tmp_path, "full", 2, args)                     # epoch 2's last.pt meets a full disk
    assert proc.returncode == 2, proc.stderr[-3000:]
    one_line(proc.stderr, f"cannot write {out / 'last.pt'}: No space left on device")
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1     # epoch 1's checkpoint, whole
    assert list(out.glob(".*.tmp")) == []
    assert main([*args, "--resume"]) == 0 and epochs_logged(out) == [1, 2]


def test_nothing_to_score_is_one_line_never_a_score(data, tmp_path, capsys):
    unreadable = make_folder(tmp_path / "bad")
    for path in (unreadable / "val").rglob("*.png"):
        path.write_bytes(b"not an image")
    out = tmp_path / "run"
    assert main(train_args(out, unreadable, "--epochs", "2", "--max-steps-per-epoch", "1")) == 2
    one_line(capsys.readouterr().err, "epoch 1: validation scored no image (4 unreadable)")
    assert sorted(p.name for p in out.glob("*.pt")) == ["last.pt"]            # no best.pt, no pool file
    assert json.loads((out / "metrics.jsonl").read_text())["val_top1"] is None
    assert main(["eval", str(out / "last.pt"), "--data", str(unreadable), "--workers", "0"]) == 2
    one_line(capsys.readouterr().err, "nothing to score: no validation image could be read (4 unreadable)")
