"""The timing harness: every implementation/runtime in a process of its own, turns that never overlap, threads set
per worker, the environment (CPU, load) recorded, worker failures reported. Nothing here is timed."""
import os
from dataclasses import asdict

import pytest

from mobilevitv3.bench import timing
from mobilevitv3.bench.runtimes import Spec
from mobilevitv3.bench.timing import BenchConfig, WorkerProcess, benchmark, rounds
from mobilevitv3.errors import UserError

SMALL = dict(image_size=64, warmup=1, runs=4, chunk=2, train=False, threads=1)


@pytest.fixture(scope="module")
def two_workers():
    specs = [Spec("mobilevitv3_xxs", "ours", "eager", 64, (1,), threads=1),
             Spec("mobilevitv3_xxs", "ours", "eager", 64, (1,), fuse=True, threads=1)]
    workers = [WorkerProcess(f"w{i}") for i in range(len(specs))]
    try:
        for w, spec in zip(workers, specs):
            w.start(1)
            w.setup_reply = w.request({"cmd": "setup", "spec": asdict(spec)})
        yield workers
    finally:
        timing.close_all(workers)


@pytest.fixture(scope="module")
def report():
    pytest.importorskip("timm")
    pytest.importorskip("onnxruntime")
    return benchmark(["mobilevit_xxs"], BenchConfig(runtimes=("eager", "onnxruntime"), vs="timm", flop_limit=True,
                                                    **SMALL))


def test_rounds_turns_never_overlap_and_alternate(two_workers):
    turns = []
    times = rounds(two_workers, "infer", 1, 1, 6, 2, [], turns)
    assert {k: len(v) for k, v in times.items()} == {"w0": 6, "w1": 6}
    spans = sorted((start, end) for _, start, end in turns)
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:]))
    assert [label for label, _, _ in turns] == ["w0", "w1", "w1", "w0", "w0", "w1"]   # the order rotates


def test_a_lone_worker_times_all_its_runs_in_one_turn(two_workers):
    turns = []   # as a plain timing loop: no pauses (and sleeping thread pools) inside its runs
    times = rounds(two_workers[:1], "infer", 1, 1, 6, 2, [], turns)
    assert len(times["w0"]) == 6 and [label for label, _, _ in turns] == ["w0"]


def test_workers_are_separate_processes_with_their_threads(two_workers):
    pids = {w.setup_reply["pid"] for w in two_workers}
    assert len(pids) == 2 and os.getpid() not in pids
    assert all(w.setup_reply["threads"] == 1 for w in two_workers)


def test_benchmark_records_environment(report):
    import importlib.metadata
    import platform

    import torch
    env = report["environment"]
    assert env["cpu"] == timing.cpu_model() != "" and env["cores"] == len(os.sched_getaffinity(0))
    assert env["threads"] == 1 and (env["torch"], env["python"]) == (torch.__version__, platform.python_version())
    assert {m: env[m] for m in ("timm", "onnxruntime")} == {m: importlib.metadata.version(m)
                                                            for m in ("timm", "onnxruntime")}
    assert "executorch" not in env   # only the runtimes that were timed
    for key in ("loadavg_before", "loadavg_after"):
        assert len(env[key]) == 3 and all(v >= 0 for v in env[key])
    assert env["loadavg_during_max"] >= 0   # the 1-minute figure of the samples taken between turns


def test_benchmark_times_every_runtime_in_its_own_process(report):
    (row,) = report["results"]
    assert set(row["runtimes"]) == {"ours/eager", "timm/eager", "ours/onnxruntime", "timm/onnxruntime"}
    assert len({s["pid"] for s in row["runtimes"].values()} | {os.getpid()}) == 5
    assert all(s["runs"] == 4 and s["latency_ms_median"] > 0 for s in row["runtimes"].values())
    assert row["runtimes"]["timm/onnxruntime"]["params"] == row["params"]


def test_benchmark_vs_timm_is_the_ratio_per_runtime(report):
    (row,) = report["results"]
    for runtime in ("eager", "onnxruntime"):
        ours, timm = (row["runtimes"][f"{impl}/{runtime}"]["latency_ms_median"] for impl in ("ours", "timm"))
        assert row["vs_timm_by_runtime"][runtime]["latency_ms_median"] == pytest.approx(ours / timm)
    assert row["vs_timm"] == row["vs_timm_by_runtime"]["eager"]


def test_benchmark_flop_limit_is_twice_the_macs_over_the_sgemm_rate(report):
    (row,) = report["results"]
    gflops = report["environment"]["sgemm_gflops"]
    assert gflops > 1
    assert row["flop_limit_ms"] == pytest.approx(2 * row["macs_true"] / gflops / 1e6)
    assert row["vs_flop_limit"] == pytest.approx(row["latency_ms_median"] / row["flop_limit_ms"])


def test_benchmark_timm_only_runtime_is_skipped_for_timm():
    pytest.importorskip("timm")
    specs = timing.specs_for("mobilevit_xxs", BenchConfig(runtimes=("optimized", "eager"), vs="timm"), 1)
    assert [s.label for s in specs] == ["ours/optimized", "ours/eager", "timm/eager"]


def test_worker_user_error_reaches_the_caller_as_one():
    with WorkerProcess("bad") as w:
        w.start(1)
        with pytest.raises(UserError, match="timm has no implementation"):
            w.request({"cmd": "setup", "spec": asdict(Spec("mobilevitv3_xxs", "timm", "eager", 64))})


def test_benchmark_unknown_runtime_is_a_user_error():
    with pytest.raises(UserError, match="unknown runtime"):
        benchmark(["mobilevitv3_xxs"], BenchConfig(runtimes=("tensorrt",)))


# ---- the zoo figure: batch-1 latency and batch throughput per runtime (bench/zoo.py) -----------------------------
@pytest.fixture(scope="module")
def zoo_report():
    pytest.importorskip("onnxruntime")
    from mobilevitv3.bench import zoo
    return zoo.speed(["mobilevitv3_xxs"], runtimes=["eager", "int8"], threads=1, runs=2, batch=4,
                     throughput_runs=2, image_size=64)


def test_zoo_speed_times_latency_and_throughput_of_every_runtime(zoo_report):
    assert zoo_report["config"]["throughput_batch"] == 4 and zoo_report["config"]["batch_size"] == 1
    (row,) = zoo_report["results"]
    assert set(row["runtimes"]) == {"ours/eager", "ours/int8"}
    for stats in row["runtimes"].values():
        assert stats["runs"] == 2 and stats["latency_ms_median"] > 0 and stats["throughput_img_s"] > 0
    assert row["runtimes"]["ours/int8"]["graph_batch"] == "static"       # the INT8 ONNX file: batch 1
    assert "graph_batch" not in row["runtimes"]["ours/eager"]


def test_zoo_speed_table_gives_latency_and_throughput_columns(zoo_report):
    from mobilevitv3.bench.zoo import speed_table
    lines = speed_table(zoo_report).splitlines()
    header = [c.strip() for c in lines[2].strip("|").split("|")]
    assert header[5:] == ["eager ms (x FLOP limit)", "eager img/s @4", "int8 ms (x FLOP limit)", "int8 img/s @4"]
    cells = [c.strip() for c in lines[4].strip("|").split("|")]
    stats = zoo_report["results"][0]["runtimes"]
    assert cells[0] == "mobilevitv3_xxs" and cells[1] == "70.98"                    # the reported top-1
    assert cells[5].startswith(f"{stats['ours/eager']['latency_ms_median']:.1f} (")
    assert cells[6] == f"{stats['ours/eager']['throughput_img_s']:.0f}"
    assert cells[8] == f"{stats['ours/int8']['throughput_img_s']:.0f}*"             # run image by image


def test_zoo_chart_has_a_latency_and_a_throughput_panel(zoo_report, tmp_path):
    from matplotlib.image import imread

    from mobilevitv3.bench.chart import accuracy_chart
    from mobilevitv3.bench.zoo import speed_series
    latency, throughput = (speed_series(zoo_report, m) for m in ("latency_ms_median", "throughput_img_s"))
    stats = zoo_report["results"][0]["runtimes"]
    assert throughput["ours int8"] == [("mobilevitv3_xxs", stats["ours/int8"]["throughput_img_s"], 70.98)]
    one, two = tmp_path / "one.png", tmp_path / "two.png"
    accuracy_chart({"latency": latency}, str(one), title="t")
    accuracy_chart({"latency": latency, "throughput": throughput}, str(two), title="t")
    (h1, w1), (h2, w2) = imread(one).shape[:2], imread(two).shape[:2]
    assert h1 == h2 and w2 > 1.8 * w1                                                 # a second panel beside


def test_a_fixed_batch_graph_runs_a_larger_batch_in_slices():
    import torch

    from mobilevitv3.bench.runtimes import _in_slices
    seen = []

    def run(x):
        seen.append(len(x))
        return [x.sum(dim=(1, 2, 3)), x[:, :1]]
    x = torch.rand(6, 3, 4, 4)
    out = _in_slices(run, 2)(x)
    assert seen == [2, 2, 2] and torch.allclose(out[0], x.sum(dim=(1, 2, 3))) and torch.equal(out[1], x[:, :1])
    with pytest.raises(UserError, match="batches of 2"):
        _in_slices(run, 2)(x[:5])


# ---- the trainer's thread policy (train/distributed.py) ------------------------------------------------------------
@pytest.mark.parametrize("busy, expected", [(0.0, 2), (0.3, 2), (0.7, 1), (1.9, 1), (None, 2)])
def test_default_threads_takes_the_cores_other_processes_leave_idle(monkeypatch, busy, expected):
    from mobilevitv3.train import distributed
    monkeypatch.setattr(distributed, "_cores", lambda: 2)
    monkeypatch.setattr(distributed, "busy_cores", lambda: busy)
    assert distributed.default_threads(1) == expected


def test_default_threads_splits_the_cores_between_local_ranks(monkeypatch):
    from mobilevitv3.train import distributed
    monkeypatch.setattr(distributed, "_cores", lambda: 8)
    monkeypatch.setattr(distributed, "busy_cores", lambda: 7.0)   # the other ranks starting up: not a reason
    assert distributed.default_threads(4) == 2


def test_busy_cores_is_the_non_idle_share_of_proc_stat_times_the_cpu_count(monkeypatch):
    import io

    from mobilevitv3.train import distributed
    # user nice system idle iowait irq softirq steal: over the interval 300 jiffies, 100 of them idle or iowait
    samples = iter(["cpu  100 0 50 800 50 0 0 0\n", "cpu  200 0 100 900 50 0 0 50\n"])
    monkeypatch.setattr(distributed, "open", lambda path: io.StringIO(next(samples)), raising=False)
    monkeypatch.setattr(distributed.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(distributed.os, "cpu_count", lambda: 4)
    assert distributed.busy_cores(0.05) == pytest.approx(4 * 200 / 300)   # steal time counts as busy


def test_busy_cores_is_none_where_proc_stat_cannot_be_read(monkeypatch):
    from mobilevitv3.train import distributed

    def unreadable(path):
        raise OSError("no /proc here")
    monkeypatch.setattr(distributed, "open", unreadable, raising=False)
    assert distributed.busy_cores(0.0) is None
