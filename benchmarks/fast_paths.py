"""Which float32 CPU path is fastest? Every candidate for `mobilevitv3.optimize` in its own worker process, timed in
alternating rounds (the bench harness), batch 1, 256x256:

  eager NCHW (as created) | eager, BatchNorm folded + channels-last | torch.compile (default Inductor) |
  optimize(backend="eager") | optimize(backend="inductor"): Inductor with weight freezing, conv + SiLU fused |
  optimize(backend="onnxruntime"): onnxruntime on the package's ONNX export

    python benchmarks/fast_paths.py [--models mobilevitv3_xxs mobilevitv3_100] [--threads 2] [--runs 100]

Prints one Markdown row per model (median ms, and the setup seconds: export or compilation) and the JSON report.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict

from mobilevitv3.bench.runtimes import Spec
from mobilevitv3.bench.timing import WorkerProcess, close_all, cpu_model, latency_stats, rounds


def candidates(name: str, threads: int) -> list[Spec]:
    return [Spec(name, "ours", "eager", threads=threads),
            Spec(name, "ours", "eager", channels_last=True, fuse=True, threads=threads),
            Spec(name, "ours", "compiled", threads=threads),
            Spec(name, "ours", "optimized", threads=threads, backend="eager"),
            Spec(name, "ours", "optimized", threads=threads, backend="inductor"),
            Spec(name, "ours", "optimized", threads=threads, backend="onnxruntime")]


def label(spec: Spec) -> str:
    extra = "+".join(k for k in ("fuse", "channels_last") if getattr(spec, k))
    return spec.label + (f" ({extra})" if extra else "")


def measure(name: str, threads: int, runs: int, loads: list[float]) -> dict:
    specs = candidates(name, threads)
    workers = [WorkerProcess(label(s)) for s in specs]
    out = {}
    try:
        for w, spec in zip(workers, specs):
            w.start(threads)
            out[w.label] = {"setup_s": round(w.request({"cmd": "setup", "spec": asdict(spec)})["setup_s"], 1)}
        for key, times in rounds(workers, "infer", 1, 10, runs, 10, loads).items():
            out[key].update(latency_stats(times, 1))
    finally:
        close_all(workers)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["mobilevitv3_xxs", "mobilevitv3_100"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--out", default="benchmarks/results/fast_paths.json")
    args = p.parse_args()
    loads: list[float] = []
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": cpu_model(),
              "threads": args.threads, "loadavg_before": list(os.getloadavg()), "models": {}}
    for name in args.models:
        report["models"][name] = measure(name, args.threads, args.runs, loads)
    report["loadavg_during_max"], report["loadavg_after"] = max(loads, default=None), list(os.getloadavg())
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    keys = list(next(iter(report["models"].values())))
    print("| model | " + " | ".join(keys) + " |\n|---|" + "---:|" * len(keys))
    for name, rows in report["models"].items():
        print(f"| {name} | " + " | ".join(f"{rows[k]['latency_ms_median']:.2f} ({rows[k]['setup_s']:.0f} s)"
                                          for k in keys) + " |")
    print(json.dumps({k: report[k] for k in ("date", "cpu", "threads", "loadavg_before", "loadavg_during_max",
                                              "loadavg_after")}))


if __name__ == "__main__":
    main()
