import os

import pytest
import torch

# Two cores shared by the suite: one intra-op thread per test process keeps timings sane.
torch.set_num_threads(int(os.environ.get("MOBILEVITV3_TEST_THREADS", "1")))


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """optimize() caches its per-machine measurement under XDG_CACHE_HOME: tests never touch the user's cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def official_checkpoint(tmp_path):
    """Write a fixture's official state dict to a file, as a release `checkpoint_ema_best.pt` would be."""
    from official import official_state_dict

    def write(fx: dict, name: str = "checkpoint_ema_best.pt"):
        path = tmp_path / name
        torch.save(official_state_dict(fx), path)
        return path
    return write


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """A small digits classifier trained once through the CLI, shared by the quantization and OpenVINO tests."""
    from mobilevitv3.cli import main
    out = tmp_path_factory.mktemp("digits")
    assert main(["train", "--model", "mobilevitv3_xxs", "--image-size", "32", "--batch-size", "32", "--epochs", "6",
                 "--threads", "1", "--workers", "0", "--warmup-iterations", "10", "--ema", "false",
                 "--data", "digits", "--out", str(out)]) == 0
    return out / "best.pt"


def cli_eval(path, capsys, data: str = "digits") -> dict:
    """`mobilevitv3 eval PATH --data DATA` in-process, as a user runs it: its JSON report (exit 0 asserted)."""
    import json

    from mobilevitv3.cli import main
    capsys.readouterr()
    assert main(["eval", str(path), "--data", data, "--workers", "0"]) == 0
    return json.loads(capsys.readouterr().out)
