"""bf16 for `optimize`: whether this CPU has native bf16, the ONNX export in OpenVINO bf16 checked against eager,
and the one measurement per machine that picks fp32 onnxruntime or OpenVINO bf16, cached as JSON in the user's
cache folder (`$XDG_CACHE_HOME/mobilevitv3/optimize.json`, else `~/.cache/...`), keyed by architecture, input size,
threads, CPU model and package versions, so a new CPU, runtime or size is measured again.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from .api import ExportError
from .cpu import cpu_has_bf16
from .job import Run, flatten, package_version
from .openvino import open_openvino

log = logging.getLogger(__name__)
# bf16 keeps 8 mantissa bits. Measured on a digits-trained v3-XXS in OpenVINO bf16: 2.5e-2 of the largest logit on
# the 360 real validation images (0.149 at 5.99, top-1 the same on all 360), 3.5e-3 on random images; 5e-2 leaves
# margin while still catching a wrong graph, which is off by the logits' own scale.
BF16_TOLERANCE = 5e-2
ROUNDS, CALLS, WARMUP = 3, 20, 3


def available() -> bool:
    """Native bf16 here and OpenVINO installed to use it."""
    return cpu_has_bf16() and importlib.util.find_spec("openvino") is not None


def checked_run(model: nn.Module, onnx_path: str, size: tuple[int, int], threads: int, *, strict: bool) -> Run | None:
    """The ONNX file in OpenVINO bf16, if it reproduces eager `model` within BF16_TOLERANCE on random images;
    otherwise an ExportError (`strict`) or None with a warning."""
    run = open_openvino(onnx_path, threads=threads, precision="bf16").run
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = flatten(copy.deepcopy(model).cpu().float().eval()(x))
    got = run(x)
    scale = max([1.0] + [e.abs().max().item() for e in expected])
    diff = max((g.float() - e).abs().max().item() for g, e in zip(got, expected))
    if diff <= BF16_TOLERANCE * scale:
        log.info("optimize: OpenVINO bf16 within %.3g of eager (tolerance %.3g)", diff, BF16_TOLERANCE * scale)
        return run
    message = f"OpenVINO bf16 differs from eager by {diff:.3g} (tolerance {BF16_TOLERANCE * scale:.3g})"
    if strict:
        raise ExportError(message)
    log.warning("optimize: %s; using fp32", message)
    return None


def measure(runs: dict[str, Run], example: Tensor) -> dict[str, float]:
    """Median ms per call of each run on `example`, in alternating rounds (load drifts hit every candidate alike)."""
    for run in runs.values():
        for _ in range(WARMUP):
            run(example)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(ROUNDS):
        for name, run in runs.items():
            start = time.perf_counter()
            for _ in range(CALLS):
                run(example)
            times[name].append((time.perf_counter() - start) * 1e3 / CALLS)
    return {name: statistics.median(t) for name, t in times.items()}


def choose(model: nn.Module, size: tuple[int, int], threads: int, runs: dict[str, Run],
           timer: Callable[[dict[str, Run], Tensor], dict[str, float]] | None = None) -> str:
    """The fastest of `runs` for this model, size and machine: from the cache, else measured once and cached."""
    key = cache_key(model, size, threads)
    cache = _read_cache()
    if key in cache and cache[key].get("choice") in runs:
        entry = cache[key]
        log.info("optimize: %s (cached measurement: %s)", entry["choice"], _ratios(entry["ms"]))
        return entry["choice"]
    ms = (timer or measure)(runs, torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0)))
    choice = min(ms, key=ms.get)
    log.info("optimize: %s, measured on this machine (batch 1, %dx%d, %d threads): %s", choice, *size, threads,
             _ratios(ms))
    cache[key] = {"choice": choice, "ms": {k: round(v, 4) for k, v in ms.items()}, "measured": time.time()}
    _write_cache(cache)
    return choice


def _ratios(ms: dict[str, float]) -> str:
    best = min(ms.values())
    return ", ".join(f"{name} {v:.2f} ms ({v / best:.2f}x)" for name, v in sorted(ms.items(), key=lambda kv: kv[1]))


def cache_key(model: nn.Module, size: tuple[int, int], threads: int) -> str:
    identity = getattr(model, "identity", None)
    arch = getattr(identity, "arch", None) or getattr(identity, "name", None) or type(model).__name__
    versions = [package_version(p) for p in ("mobilevitv3", "onnxruntime", "openvino")] + [f"torch {torch.__version__}"]
    return json.dumps([arch, list(size), threads, _cpu_model(), versions])


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    line = next((ln for ln in text.splitlines() if ln.startswith("model name")), "")
    return line.partition(":")[2].strip() or platform.machine()


def cache_path() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "mobilevitv3" / "optimize.json"


def _read_cache() -> dict:
    try:
        data = json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(cache: dict) -> None:
    """Atomically (a temporary file renamed over the old one): a reader never sees half a file."""
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".optimize.", delete=False) as f:
            json.dump(cache, f, indent=1, sort_keys=True)
        os.replace(f.name, path)
    except OSError as e:
        log.warning("optimize: cannot cache the measurement in %s (%s)", path, e.strerror or e)
