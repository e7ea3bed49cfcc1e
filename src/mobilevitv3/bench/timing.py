"""Speed of zoo models: latency, throughput, training-step throughput and peak memory, optionally against timm's
implementations of the same architectures, timed in the same process and alternating (chunks of `chunk` calls) so
that load drift on a shared machine hits both sides alike.

Latency: batch `batch_size`, one wall time per forward (CUDA: a pair of CUDA events around each forward, then a
synchronize -- the official `main_latency.py` protocol), mean and median over `runs` forwards after `warmup`.
Throughput: images/s over `throughput_runs` forwards at `throughput_batch` (0: derived from the latency runs).
Training step: forward + backward + SGD step on a train-mode copy. Peak memory: bytes a forward allocates above the
resident weights (CUDA allocator peak; on CPU the running sum of the profiler's allocation events).
"""
from __future__ import annotations

import copy
import datetime
import logging
import os
import platform
import statistics
import tempfile
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Callable, Literal

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..export import export
from ..export.onnx import ort_session
from ..layers import fuse
from ..models import create_model, list_models
from .counting import official_macs, param_count, true_macs

log = logging.getLogger(__name__)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# timm implements these architectures under the same names (its v2 widths: 050 ... 200).
TIMM_NAMES = ("mobilevit_xxs", "mobilevit_xs", "mobilevit_s",
              *(f"mobilevitv2_{w}" for w in ("050", "075", "100", "125", "150", "175", "200")))


@dataclass(frozen=True)
class BenchConfig:
    device: Literal["cpu", "cuda"] = "cpu"
    batch_size: int = 1
    image_size: int = 256
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"   # bf16/fp16: torch.autocast around the forward
    channels_last: bool = False                       # model and input (ours is channels-last inside on CPU anyway)
    compile: bool = False                             # torch.compile, both sides (fullgraph=True for ours)
    runtime: Literal["eager", "onnxruntime"] = "eager"
    fuse: bool = False                                # fold BatchNorm into convs (ours only: timm has no such step)
    threads: int | None = None
    vs: Literal["timm"] | None = None
    warmup: int = 10
    runs: int = 100
    throughput_batch: int = 0                         # 0: throughput = batch_size / mean latency
    throughput_runs: int = 20
    train: bool = True
    train_batch: int = 0                              # 0: max(2, batch_size) (train-mode BN needs two samples)
    train_runs: int = 10
    chunk: int = 5


# The paper's protocol (official main_latency.py): batch-1 latency over 10,000 forwards after 10 warm-up ones,
# batch-100 throughput over 1,000, 256x256, float32, no channels-last.
PRESETS = {"official": dict(batch_size=1, image_size=256, dtype="fp32", channels_last=False, warmup=10,
                            runs=10000, throughput_batch=100, throughput_runs=1000)}


def benchmark(names: list[str], cfg: BenchConfig = BenchConfig()) -> dict:
    """Benchmark every model in `names` (shell patterns allowed); a JSON-able report."""
    _validate(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    models = _expand(names)
    env = environment(cfg)
    results = []
    for name in models:
        log.info("benchmarking %s", name)
        results.append(bench_model(name, cfg))
    env["loadavg_after"] = _loadavg()
    return {"config": asdict(cfg), "environment": env, "results": results}


def bench_model(name: str, cfg: BenchConfig) -> dict:
    """One model's row: counts, our figures, and (with `vs`) timm's figures plus `vs_timm` = ours / timm per figure
    (below 1 is faster for latency; above 1 is faster for throughput)."""
    model = create_model(name).eval()
    entry = {"name": name, "params": param_count(model), "macs_official": official_macs(model, cfg.image_size),
             "macs_true": true_macs(model, cfg.image_size)}
    sides = {"ours": model}
    reference = timm_name(name) if cfg.vs == "timm" else None
    if reference is not None:
        import timm
        sides["timm"] = timm.create_model(reference).eval()
    elif cfg.vs:
        log.warning("timm has no implementation of %s: timing ours alone", name)
    params = {k: param_count(m) for k, m in sides.items()}
    stats = _time_sides(sides, cfg)
    entry.update(stats["ours"])
    if reference is not None:
        entry["timm"] = {"name": reference, "params": params["timm"], **stats["timm"]}
        entry["vs_timm"] = {k: entry[k] / entry["timm"][k] for k in
                            ("latency_ms_mean", "latency_ms_median", "throughput_img_s", "train_img_s")
                            if entry.get(k) and entry["timm"].get(k)}
    return entry


def _time_sides(sides: dict[str, nn.Module], cfg: BenchConfig) -> dict[str, dict]:
    """Latency, throughput, training step and peak memory of each model, the models taking turns."""
    infer = {k: _inference_fn(m, cfg, ours=k == "ours") for k, m in sides.items()}
    stats = {k: {} for k in sides}
    for key, times in _alternate(infer, cfg.batch_size, cfg.warmup, cfg.runs, cfg).items():
        stats[key].update(_latency_stats(times, cfg.batch_size))
    if cfg.throughput_batch:
        for key, times in _alternate(infer, cfg.throughput_batch, min(cfg.warmup, 3), cfg.throughput_runs,
                                     cfg).items():
            stats[key]["throughput_img_s"] = cfg.throughput_batch * len(times) / sum(times)
    for key, fn in infer.items():
        stats[key]["peak_memory_mb"] = peak_memory_mb(lambda: fn(cfg.batch_size), cfg) if fn.torch else None
    if cfg.train and cfg.runtime == "eager":
        train_batch = cfg.train_batch or max(2, cfg.batch_size)
        steps = {k: _train_fn(m, cfg, ours=k == "ours") for k, m in sides.items()}
        for key, times in _alternate(steps, train_batch, 2, cfg.train_runs, cfg).items():
            stats[key]["train_img_s"] = train_batch * len(times) / sum(times)
        for key, fn in steps.items():
            stats[key]["train_peak_memory_mb"] = peak_memory_mb(lambda: fn(train_batch), cfg)
    return stats


def timm_name(name: str) -> str | None:
    """timm's name for the same classification architecture, None where timm has none."""
    arch = name.partition(".")[0]
    return arch if arch in TIMM_NAMES else None


class _Runner:
    """`fn(batch)` runs one step on a cached input of that batch size; `torch`: whether torch ops run it."""

    def __init__(self, step: Callable[[object], object], make_input: Callable[[int], object], torch_ops: bool):
        self.step, self.make_input, self.torch, self.inputs = step, make_input, torch_ops, {}

    def __call__(self, batch: int) -> object:
        if batch not in self.inputs:
            self.inputs[batch] = self.make_input(batch)
        return self.step(self.inputs[batch])


def _image(cfg: BenchConfig, batch: int) -> Tensor:
    x = torch.randn(batch, 3, cfg.image_size, cfg.image_size, device=cfg.device)
    return x.contiguous(memory_format=torch.channels_last) if cfg.channels_last else x


def _autocast(cfg: BenchConfig):
    return (torch.autocast(cfg.device, dtype=DTYPES[cfg.dtype]) if cfg.dtype != "fp32" else nullcontext())


def _inference_fn(model: nn.Module, cfg: BenchConfig, *, ours: bool) -> _Runner:
    model = fuse(model) if cfg.fuse and ours else model
    if cfg.runtime == "onnxruntime":
        session = _onnx_session(model, _image(cfg, 1), cfg)
        feed = session.get_inputs()[0].name
        return _Runner(lambda x: session.run(None, {feed: x}), lambda b: _image(cfg, b).cpu().numpy(), False)
    model = model.to(cfg.device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.compile:  # ours must compile to one graph; a reference model may break its graph
        model = torch.compile(model, fullgraph=ours, dynamic=False)

    def step(x: Tensor) -> object:
        with torch.inference_mode(), _autocast(cfg):
            return model(x)
    return _Runner(step, lambda b: _image(cfg, b), True)


def _train_fn(model: nn.Module, cfg: BenchConfig, *, ours: bool) -> _Runner:
    model = copy.deepcopy(model).to(cfg.device).train()
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    forward = torch.compile(model, fullgraph=ours, dynamic=False) if cfg.compile else model

    def step(x: Tensor) -> None:
        with _autocast(cfg):
            out = forward(x)
            outs = out if isinstance(out, (tuple, list)) else (out,)
            loss = sum(o.float().mean() for o in outs)  # any output structure; the value is irrelevant
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return _Runner(step, lambda b: _image(cfg, b), True)


def _timer(cfg: BenchConfig) -> Callable[[Callable[[], object]], float]:
    """Seconds one call takes: CUDA events + synchronize on CUDA (official protocol), else a monotonic clock."""
    if cfg.device == "cuda" and cfg.runtime == "eager":
        def cuda_time(fn: Callable[[], object]) -> float:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1e3
        return cuda_time

    def wall_time(fn: Callable[[], object]) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    return wall_time


def _alternate(fns: dict[str, _Runner], batch: int, warmup: int, runs: int, cfg: BenchConfig) -> dict[str, list]:
    """Per-call seconds of each runner; the runners take turns, `cfg.chunk` calls at a time."""
    timer, times = _timer(cfg), {k: [] for k in fns}
    for fn in fns.values():
        for _ in range(warmup):
            fn(batch)
        if cfg.device == "cuda":
            torch.cuda.synchronize()
    while len(next(iter(times.values()))) < runs:
        n = min(cfg.chunk, runs - len(next(iter(times.values()))))
        for key, fn in fns.items():
            times[key] += [timer(lambda: fn(batch)) for _ in range(n)]
    return times


def _latency_stats(times: list[float], batch: int) -> dict:
    ms = [t * 1e3 for t in times]
    mean = statistics.fmean(ms)
    return {"latency_ms_mean": mean, "latency_ms_median": statistics.median(ms), "latency_ms_min": min(ms),
            "latency_ms_std": statistics.pstdev(ms), "runs": len(ms), "throughput_img_s": batch * 1e3 / mean}


def peak_memory_mb(fn: Callable[[], object], cfg: BenchConfig) -> float:
    """MiB one call allocates at its peak above what was allocated before it."""
    if cfg.device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU)
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak / 2**20


def _onnx_session(model: nn.Module, example: Tensor, cfg: BenchConfig):
    """An onnxruntime session on the package's own ONNX export of `model` (batch axis dynamic)."""
    if cfg.device == "cuda":
        raise UserError("--runtime onnxruntime times the CPU execution provider; drop --device cuda")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        export(model.cpu().eval(), "onnx", path, image_size=tuple(example.shape[-2:]), dynamic_batch=True)
        return ort_session(path, threads=cfg.threads)


def _expand(names: list[str]) -> list[str]:
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
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    if cfg.runtime == "onnxruntime" and (cfg.compile or cfg.dtype != "fp32"):
        raise UserError("--runtime onnxruntime times the exported float32 graph: drop --compile / --dtype")
    for field in ("batch_size", "image_size", "runs"):
        if getattr(cfg, field) < 1:
            raise UserError(f"{field.replace('_', '-')} must be at least 1")
    if cfg.vs == "timm":
        try:
            import timm  # noqa: F401
        except ImportError:
            raise UserError("--vs timm needs timm installed (pip install timm)") from None


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def environment(cfg: BenchConfig) -> dict:
    env = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "torch": torch.__version__, "python": platform.python_version(), "cpu": cpu_model(),
           "threads": torch.get_num_threads(), "loadavg_before": _loadavg()}
    if cfg.device == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
    if cfg.vs == "timm":
        import timm
        env["timm"] = timm.__version__
    if cfg.runtime == "onnxruntime":
        import onnxruntime
        env["onnxruntime"] = onnxruntime.__version__
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
