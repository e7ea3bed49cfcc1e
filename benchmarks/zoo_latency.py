"""Every v1/v2/v3 classifier's measured latency beside its reported ImageNet top-1: the papers' accuracy-vs-cost
figure, one series per runtime (eager as created, the library's best fp32 path `optimized`, and `int8`, the INT8 ONNX
file of `mobilevitv3.export.quantize` in onnxruntime, when the package has it).

    python benchmarks/zoo_latency.py [--models PATTERN...] [--runtimes eager optimized] [--threads 2] [--runs 50]
        [--out benchmarks/zoo_latency]

Latency: `mobilevitv3.bench.timing.benchmark` (each runtime in its own worker, alternating rounds), batch 1,
256x256, fp32, with the FLOP limit (2 x true MACs / this CPU's SGEMM rate). Top-1: `bench.zoo.REPORTED_TOP1` (the
official READMEs; labelled "reported"). Writes OUT.json, OUT.md and OUT.png.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import time

from mobilevitv3 import list_models
from mobilevitv3.bench.chart import accuracy_chart
from mobilevitv3.bench.timing import BenchConfig, benchmark
from mobilevitv3.bench.zoo import REPORTED_TOP1


def markdown(report: dict, runtimes: list[str]) -> str:
    env = report["environment"]
    head = " | ".join(f"{r} ms (x FLOP limit)" for r in runtimes)
    lines = [f"{env['cpu']}, {env['threads']} threads, SGEMM {env['sgemm_gflops']:.0f} GFLOP/s, {env['date']}, "
             f"load {env['loadavg_before'][0]} before, max {env['loadavg_during_max']} during", "",
             f"| model | top-1 (reported) | params | true MACs | FLOP limit ms | {head} |",
             "|---|---:|---:|---:|---:|" + "---:|" * len(runtimes)]
    for row in report["results"]:
        cells = [f"{(s := row['runtimes'][f'ours/{r}'])['latency_ms_median']:.1f} ({s['vs_flop_limit']:.1f}x)"
                 for r in runtimes]
        top1 = REPORTED_TOP1.get(row["name"])
        lines.append(f"| {row['name']} | {top1 if top1 else '--'} | {row['params'] / 1e6:.2f}M | "
                     f"{row['macs_true'] / 1e6:.0f}M | {row['flop_limit_ms']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["mobilevit_*", "mobilevitv2_*", "mobilevitv3_*"])
    p.add_argument("--runtimes", nargs="+", default=["eager", "optimized"] + (
        ["int8"] if importlib.util.find_spec("mobilevitv3.export.quantize") else []))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--out", default="benchmarks/zoo_latency")
    args = p.parse_args()
    names = sorted({n for pattern in args.models for n in list_models(pattern, task="classification")})
    cfg = BenchConfig(runtimes=tuple(args.runtimes), threads=args.threads, runs=args.runs, warmup=5, chunk=5,
                      train=False, flop_limit=True)
    report = benchmark(names, cfg)
    with open(f"{args.out}.json", "w") as f:
        json.dump(report, f, indent=1)
    series = {}
    for runtime in args.runtimes:
        series[f"ours {runtime}"] = [
            (r["name"], r["runtimes"][f"ours/{runtime}"]["latency_ms_median"], REPORTED_TOP1[r["name"]])
            for r in report["results"] if r["name"] in REPORTED_TOP1]
    env = report["environment"]
    accuracy_chart(series, f"{args.out}.png", title=f"ImageNet-1k top-1 (reported) vs latency measured on "
                   f"{env['cpu']}, {env['threads']} threads, batch 1, 256x256, fp32 ({time.strftime('%Y-%m-%d')})")
    with open(f"{args.out}.md", "w") as f:
        f.write(markdown(report, args.runtimes))
    print(markdown(report, args.runtimes))


if __name__ == "__main__":
    main()
