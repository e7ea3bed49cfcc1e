"""The timing harness: every implementation/runtime pair in a worker process of its own (`worker.py`), timed in
alternating rounds so that load drift on a shared machine hits every pair alike.

Each round, every worker in turn (the order rotates) does `chunk` timed calls while the others block on their
pipes: no thread pool of one pair spins while another is timed. Latency: batch `batch_size`, one clock per call
(CUDA: events + synchronize, the official protocol); median, mean, min over `runs` calls after `warmup`.
Throughput: images/s at `throughput_batch` (0: from the latency calls). Training step: forward + backward + SGD
step on a train-mode copy (eager and compiled runtimes). Peak memory: bytes a call allocates above the resident
weights. The report records the CPU model, the load average before, during and after, and every worker's threads.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib.metadata import version
from typing import Literal

from ..errors import UserError
from .counting import official_macs, param_count, true_macs
from .runtimes import RUNTIMES, TORCH_RUNTIMES, Spec, timm_name

log = logging.getLogger(__name__)
SETTLE_S = 0.005   # pause between two workers' turns: spinning OpenMP / onnxruntime threads go back to sleep


@dataclass(frozen=True)
class BenchConfig:
    device: Literal["cpu", "cuda"] = "cpu"
    batch_size: int = 1
    image_size: int = 256
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"   # bf16/fp16: torch.autocast around the forward
    channels_last: bool = False                       # model and input, every implementation
    runtimes: tuple[str, ...] = ("eager",)            # each timed for ours (and timm with `vs`) where it exists
    fuse: bool = False                                # fold BatchNorm into convs first (ours: timm has no such step)
    threads: int | None = None                        # per worker; None: every core this process may use
    vs: Literal["timm"] | None = None
    warmup: int = 10
    runs: int = 100
    throughput_batch: int = 0                         # 0: throughput = batch_size / mean latency
    throughput_runs: int = 20
    train: bool = True
    train_batch: int = 0                              # 0: max(2, batch_size) (train-mode BN needs two samples)
    train_runs: int = 10
    chunk: int = 10                                   # timed calls per worker per round
    flop_limit: bool = False                          # measure SGEMM and report each latency against it


# The paper's protocol (official main_latency.py): batch-1 latency over 10,000 forwards after 10 warm-up ones,
# batch-100 throughput over 1,000, 256x256, float32, no channels-last.
PRESETS = {"official": dict(batch_size=1, image_size=256, dtype="fp32", channels_last=False, warmup=10,
                            runs=10000, throughput_batch=100, throughput_runs=1000)}


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1


def benchmark(names: list[str], cfg: BenchConfig = BenchConfig()) -> dict:
    """Benchmark every model in `names` (shell patterns allowed); a JSON-able report."""
    _validate(cfg)
    models = _expand(names)
    threads = cfg.threads or cores()
    env = environment(cfg, threads)
    loads: list[float] = []
    if cfg.flop_limit:
        env["sgemm_gflops"] = measure_sgemm(threads)
    results = []
    for name in models:
        log.info("benchmarking %s", name)
        results.append(bench_model(name, cfg, threads, env.get("sgemm_gflops"), loads))
    env["loadavg_during_max"] = max(loads, default=None)
    env["loadavg_after"] = _loadavg()
    return {"config": asdict(cfg), "environment": env, "results": results}


def specs_for(name: str, cfg: BenchConfig, threads: int) -> list[Spec]:
    impls = ["ours"]
    if cfg.vs == "timm":
        if timm_name(name):
            impls.append("timm")
        else:
            log.warning("timm has no implementation of %s: timing ours alone", name)
    batches = tuple(sorted({cfg.batch_size, cfg.throughput_batch} - {0}))
    return [Spec(name, impl, runtime, cfg.image_size, batches, cfg.channels_last, cfg.fuse, threads, cfg.device,
                 cfg.dtype, cfg.train and runtime in ("eager", "compiled"))
            for runtime in cfg.runtimes for impl in impls if impl in RUNTIMES[runtime]]


def bench_model(name: str, cfg: BenchConfig, threads: int, gflops: float | None = None,
                loads: list[float] | None = None) -> dict:
    """One model's row: counts, then per `impl/runtime` its figures; with `vs` timm's figures and `vs_timm`
    = ours / timm for the first runtime both have (below 1 is faster for latency)."""
    from ..models import create_model
    model = create_model(name).eval()
    entry = {"name": name, "params": param_count(model), "macs_official": official_macs(model, cfg.image_size),
             "macs_true": true_macs(model, cfg.image_size)}
    del model
    if gflops:
        entry["flop_limit_ms"] = 2 * entry["macs_true"] * cfg.batch_size / (gflops * 1e9) * 1e3
    stats = run_pool(specs_for(name, cfg, threads), cfg, [] if loads is None else loads)
    for s in stats.values():
        if gflops and s.get("latency_ms_median"):
            s["vs_flop_limit"] = s["latency_ms_median"] / entry["flop_limit_ms"]
    entry["runtimes"] = stats
    entry.update(stats[f"ours/{cfg.runtimes[0]}"])
    shared = [r for r in cfg.runtimes if f"timm/{r}" in stats]
    if shared:
        timm = stats[f"timm/{shared[0]}"]
        entry["timm"] = {"name": timm_name(name), **timm}
        entry["vs_timm"] = _ratios(stats[f"ours/{shared[0]}"], timm)
        entry["vs_timm_by_runtime"] = {r: _ratios(stats[f"ours/{r}"], stats[f"timm/{r}"]) for r in shared}
    return entry


def measure_sgemm(threads: int) -> float:
    """GFLOP/s of a float32 2048x2048 matrix product in a fresh worker with `threads` threads: the FLOP limit of a
    latency is 2 * true MACs / this rate."""
    with WorkerProcess("sgemm") as w:
        w.start(threads)
        return w.request({"cmd": "sgemm", "threads": threads})["gflops"]


def _ratios(ours: dict, timm: dict) -> dict:
    keys = ("latency_ms_mean", "latency_ms_median", "throughput_img_s", "train_img_s")
    return {k: ours[k] / timm[k] for k in keys if ours.get(k) and timm.get(k)}


def run_pool(specs: list[Spec], cfg: BenchConfig, loads: list[float]) -> dict[str, dict]:
    """Start one worker per spec, set them up one after another, time them in alternating rounds."""
    workers = [WorkerProcess(s.label) for s in specs]
    try:
        for w in workers:
            w.start(cfg.threads or cores())
        setup = {}
        for w, spec in zip(workers, specs):   # one at a time: builds and compilations do not compete
            setup[w.label] = w.request({"cmd": "setup", "spec": asdict(spec)})
        stats = {w.label: {"params": setup[w.label]["params"], "threads": setup[w.label]["threads"],
                           "runtime_version": setup[w.label]["runtime_version"], "pid": setup[w.label]["pid"],
                           "setup_s": round(setup[w.label]["setup_s"], 2)} for w in workers}
        for w in workers:   # an exported file of fixed batch: its throughput batch ran in slices of that batch
            if "graph_batch" in setup[w.label]:
                stats[w.label]["graph_batch"] = setup[w.label]["graph_batch"]
        for label, times in rounds(workers, "infer", cfg.batch_size, cfg.warmup, cfg.runs, cfg.chunk,
                                   loads).items():
            stats[label].update(latency_stats(times, cfg.batch_size))
        if cfg.throughput_batch:
            for label, times in rounds(workers, "infer", cfg.throughput_batch, min(cfg.warmup, 3),
                                       cfg.throughput_runs, cfg.chunk, loads).items():
                stats[label]["throughput_img_s"] = cfg.throughput_batch * len(times) / sum(times)
        for w in workers:
            stats[w.label]["peak_memory_mb"] = w.request({"cmd": "memory", "kind": "infer",
                                                          "batch": cfg.batch_size})["mb"]
        trainers = [w for w in workers if setup[w.label]["train"]]
        if trainers:
            batch = cfg.train_batch or max(2, cfg.batch_size)
            for label, times in rounds(trainers, "train", batch, 2, cfg.train_runs, cfg.chunk, loads).items():
                stats[label]["train_img_s"] = batch * len(times) / sum(times)
            for w in trainers:
                stats[w.label]["train_peak_memory_mb"] = w.request({"cmd": "memory", "kind": "train",
                                                                    "batch": batch})["mb"]
        return stats
    finally:
        close_all(workers)


def close_all(workers: list[WorkerProcess]) -> None:
    """Ask every worker to quit first, then wait for each: their interpreters shut down side by side."""
    for w in workers:
        w.quit()
    for w in workers:
        w.close()


def rounds(workers: list[WorkerProcess], kind: str, batch: int, warmup: int, runs: int, chunk: int,
           loads: list[float], turns: list[tuple[str, float, float]] | None = None) -> dict[str, list[float]]:
    """Per-call seconds of each worker: `warmup` untimed calls each, then rounds of `chunk` calls per worker.
    A lone worker has nothing to alternate with: it makes all `runs` calls in one turn, as a plain timing loop does
    (turns of 10 with a pause between them measured 4-12% slower: the first call after a pause finds its thread
    pool asleep and its caches cold). `turns` (if given) receives (label, wall-clock start, end) of every turn."""
    times: dict[str, list[float]] = {w.label: [] for w in workers}
    chunk = runs if len(workers) == 1 else chunk
    for w in workers:
        if warmup:
            w.request({"cmd": "time", "kind": kind, "batch": batch, "n": warmup})
    done, turn = 0, 0
    while done < runs:
        n = min(chunk, runs - done)
        shift = turn % len(workers)
        for w in workers[shift:] + workers[:shift]:
            time.sleep(SETTLE_S)
            reply = w.request({"cmd": "time", "kind": kind, "batch": batch, "n": n})
            times[w.label] += reply["times"]
            if turns is not None:
                turns.append((w.label, *reply["span"]))
        load = _loadavg()
        if load:
            loads.append(load[0])
        done, turn = done + n, turn + 1
    return times


def latency_stats(times: list[float], batch: int) -> dict:
    ms = [t * 1e3 for t in times]
    mean = statistics.fmean(ms)
    return {"latency_ms_mean": mean, "latency_ms_median": statistics.median(ms), "latency_ms_min": min(ms),
            "latency_ms_std": statistics.pstdev(ms), "runs": len(ms), "throughput_img_s": batch * 1e3 / mean}


class WorkerProcess:
    """A `python -m mobilevitv3.bench.worker` child; `request(msg)` sends one JSON line and waits for the reply."""

    def __init__(self, label: str) -> None:
        self.label, self.proc, self.log = label, None, None

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self, threads: int) -> None:
        self.log = tempfile.TemporaryFile(mode="w+")   # its warnings and tracebacks, shown when it fails
        self.proc = subprocess.Popen([sys.executable, "-m", "mobilevitv3.bench.worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True, bufsize=1)
        log.debug("started worker %s (pid %d, %d threads)", self.label, self.proc.pid, threads)

    def request(self, msg: dict) -> dict:
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            raise RuntimeError(f"benchmark worker {self.label} exited ({self.proc.poll()}):\n{self._tail()}")
        reply = json.loads(line)
        if "error" in reply:
            if reply["user"]:
                raise UserError(f"{self.label}: {reply['error'].partition(': ')[2]}")
            raise RuntimeError(f"benchmark worker {self.label}: {reply['error']}\n{self._tail()}")
        return reply

    def _tail(self, lines: int = 30) -> str:
        self.log.seek(0)
        return "".join(self.log.readlines()[-lines:])

    def quit(self) -> None:
        if self.proc is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.write('{"cmd": "quit"}\n')
                self.proc.stdin.close()
            except OSError:
                pass

    def close(self) -> None:
        if self.proc is None:
            return
        self.quit()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.log.close()
        self.proc = None


def _expand(names: list[str]) -> list[str]:
    from ..models import list_models
    out = []
    for name in names:
        if any(c in name for c in "*?["):
            matched = list_models(name)
            if not matched:
                raise UserError(f"no model matches {name!r}; see `mobilevitv3 list`")
            out += matched
        else:
            out.append(name)
    return out


def _validate(cfg: BenchConfig) -> None:
    import torch
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    unknown = [r for r in cfg.runtimes if r not in RUNTIMES]
    if unknown or not cfg.runtimes:
        raise UserError(f"unknown runtime {', '.join(unknown) or '(none)'}; choose from {', '.join(RUNTIMES)}")
    exported = [r for r in cfg.runtimes if r not in TORCH_RUNTIMES]
    if exported and (cfg.device != "cpu" or cfg.dtype != "fp32"):
        raise UserError(f"--runtime {exported[0]} times the exported float32 graph on CPU: drop --device / --dtype")
    for name in ("batch_size", "image_size", "runs", "chunk"):
        if getattr(cfg, name) < 1:
            raise UserError(f"{name.replace('_', '-')} must be at least 1")
    if cfg.threads is not None and cfg.threads < 1:
        raise UserError("threads must be at least 1")
    if cfg.vs == "timm":
        try:
            import timm  # noqa: F401
        except ImportError:
            raise UserError("--vs timm needs timm installed (pip install timm)") from None
    if "executorch" in cfg.runtimes:
        try:
            import executorch  # noqa: F401
        except ImportError:
            raise UserError("--runtime executorch needs executorch installed (pip install executorch)") from None


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def environment(cfg: BenchConfig, threads: int) -> dict:
    import torch
    env = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
           "torch": torch.__version__, "python": platform.python_version(), "cpu": cpu_model(),
           "cores": cores(), "threads": threads, "loadavg_before": _loadavg(),
           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    if cfg.device == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
    for module in ("timm", "onnxruntime", "executorch"):
        if (module == "timm" and cfg.vs == "timm") or module in cfg.runtimes:
            env[module] = version(module)
    return env


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
