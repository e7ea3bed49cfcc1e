"""Latency against input size and batch, and the attention's share of the time, for v3-XXS / v3-S (v1-based,
multi-head attention: cost ~ N^2 per block) and v3-0.5 / v3-1.0 (v2-based, separable attention: cost ~ N).

    python benchmarks/scaling.py [--models ...] [--sizes 160 224 256 320 384 512] [--batches 1 4 16 64]
        [--runtimes eager optimized] [--threads 2] [--runs 20] [--out benchmarks/scaling]

Latency: the bench harness (`mobilevitv3.bench.timing`), one worker process per model/runtime/size, rounds
alternating between the runtimes. Attention share: forward hooks around every attention module (`attn` of each
transformer layer: projections, scores, softmax, weighted sum) in an eager NCHW model in this process, after the
workers are gone; share = attention seconds / forward seconds, median of `--runs` forwards. Writes OUT.json,
OUT.md (tables) and OUT.png (charts).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import asdict

import torch

from mobilevitv3 import create_model
from mobilevitv3.bench.chart import line_chart
from mobilevitv3.bench.runtimes import Spec
from mobilevitv3.bench.timing import WorkerProcess, close_all, cpu_model, latency_stats, rounds
from mobilevitv3.layers.attention import LinearSelfAttention, MultiHeadAttention

MODELS = ["mobilevitv3_xxs", "mobilevitv3_s", "mobilevitv3_050", "mobilevitv3_100"]


def time_workers(specs: list[Spec], batches: list[int], runs: int, loads: list[float]) -> dict:
    """{(label, batch): stats} for workers built from `specs`, alternating in rounds per batch."""
    workers = [WorkerProcess(s.label) for s in specs]
    out = {}
    try:
        for w, spec in zip(workers, specs):
            w.start(spec.threads)
            w.request({"cmd": "setup", "spec": asdict(spec)})
        for batch in batches:
            n = max(3, runs // batch) if batch > 1 else runs
            for label, times in rounds(workers, "infer", batch, 2, n, 5, loads).items():
                out[(label, batch)] = latency_stats(times, batch)
    finally:
        close_all(workers)
    return out


def attention_share(name: str, size: int, runs: int) -> dict:
    """Median fraction of a batch-1 eager forward spent inside the attention modules, and their ms."""
    model = create_model(name).eval()
    spent = [0.0]
    starts: dict[int, float] = {}

    def before(mod, args) -> None:
        starts[id(mod)] = time.perf_counter()

    def after(mod, args, out) -> None:
        spent[0] += time.perf_counter() - starts[id(mod)]
    for m in model.modules():
        if isinstance(m, (MultiHeadAttention, LinearSelfAttention)):
            m.register_forward_pre_hook(before)
            m.register_forward_hook(after)
    x = torch.randn(1, 3, size, size)
    shares, attn_ms, total_ms = [], [], []
    with torch.inference_mode():
        for i in range(runs + 3):
            spent[0] = 0.0
            start = time.perf_counter()
            model(x)
            total = time.perf_counter() - start
            if i >= 3:
                shares.append(spent[0] / total)
                attn_ms.append(spent[0] * 1e3)
                total_ms.append(total * 1e3)
    return {"share": statistics.median(shares), "attention_ms": statistics.median(attn_ms),
            "forward_ms": statistics.median(total_ms)}


def markdown(data: dict, args: argparse.Namespace) -> str:
    lines = [f"Latency (median ms) against input size, batch 1, {args.threads} threads:", "",
             "| model | runtime | " + " | ".join(str(s) for s in args.sizes) + " |",
             "|---|---|" + "---:|" * len(args.sizes)]
    for name in args.models:
        for rt in args.runtimes:
            cells = [f"{data['size'][name][rt][str(s)]['latency_ms_median']:.1f}" for s in args.sizes]
            lines.append(f"| {name} | {rt} | " + " | ".join(cells) + " |")
    lines += ["", f"Latency (median ms per batch) and images/s against batch, {args.batch_size_image}x"
              f"{args.batch_size_image}:", "", "| model | runtime | " +
              " | ".join(f"batch {b}" for b in args.batches) + " |", "|---|---|" + "---:|" * len(args.batches)]
    for name in args.models:
        for rt in args.runtimes:
            cells = [f"{(s := data['batch'][name][rt][str(b)])['latency_ms_median']:.1f} "
                     f"({s['throughput_img_s']:.0f}/s)" for b in args.batches]
            lines.append(f"| {name} | {rt} | " + " | ".join(cells) + " |")
    lines += ["", "Attention modules' share of an eager NCHW batch-1 forward (their ms in brackets):", "",
              "| model | " + " | ".join(str(s) for s in args.sizes) + " |", "|---|" + "---:|" * len(args.sizes)]
    for name in args.models:
        cells = [f"{(a := data['attention'][name][str(s)])['share'] * 100:.0f}% ({a['attention_ms']:.1f})"
                 for s in args.sizes]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def charts(data: dict, args: argparse.Namespace, path: str) -> None:
    title = f"{cpu_model()}, {args.threads} threads, fp32 ({data['date']})"
    by_size = {rt: {n: [(s, data["size"][n][rt][str(s)]["latency_ms_median"]) for s in args.sizes]
                    for n in args.models} for rt in args.runtimes}
    by_size["attention share (eager)"] = {n: [(s, 100 * data["attention"][n][str(s)]["share"]) for s in args.sizes]
                                          for n in args.models}
    line_chart(by_size, path, xlabel="input side (px)", ylabel="median latency (ms) / attention share (%)",
               title=f"latency vs input size, batch 1 -- {title}")
    by_batch = {rt: {n: [(b, data["batch"][n][rt][str(b)]["throughput_img_s"]) for b in args.batches]
                     for n in args.models} for rt in args.runtimes}
    line_chart(by_batch, path.replace(".png", "_batch.png"), xlabel="batch", ylabel="images/s",
               title=f"throughput vs batch, {args.batch_size_image}px -- {title}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=MODELS)
    p.add_argument("--sizes", nargs="+", type=int, default=[160, 224, 256, 320, 384, 512])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 4, 16, 64])
    p.add_argument("--batch-size-image", type=int, default=256)
    p.add_argument("--runtimes", nargs="+", default=["eager", "optimized"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--out", default="benchmarks/scaling")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    loads: list[float] = []
    data = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": cpu_model(), "threads": args.threads,
            "loadavg_before": list(os.getloadavg()), "size": {}, "batch": {}, "attention": {}}
    for name in args.models:
        data["size"][name] = {rt: {} for rt in args.runtimes}
        for size in args.sizes:
            specs = [Spec(name, "ours", rt, size, (1,), threads=args.threads) for rt in args.runtimes]
            for (label, _), stats in time_workers(specs, [1], args.runs, loads).items():
                data["size"][name][label.split("/")[1]][str(size)] = stats
            print(name, size, {rt: round(data["size"][name][rt][str(size)]["latency_ms_median"], 2)
                               for rt in args.runtimes}, flush=True)
        specs = [Spec(name, "ours", rt, args.batch_size_image, tuple(args.batches), threads=args.threads)
                 for rt in args.runtimes]
        data["batch"][name] = {rt: {} for rt in args.runtimes}
        for (label, batch), stats in time_workers(specs, args.batches, args.runs, loads).items():
            data["batch"][name][label.split("/")[1]][str(batch)] = stats
        data["attention"][name] = {str(s): attention_share(name, s, args.runs) for s in args.sizes}
        print(name, "attention", {s: round(a["share"], 3) for s, a in data["attention"][name].items()}, flush=True)
    data["loadavg_during_max"] = max(loads, default=None)
    data["loadavg_after"] = list(os.getloadavg())
    with open(f"{args.out}.json", "w") as f:
        json.dump(data, f, indent=1)
    with open(f"{args.out}.md", "w") as f:
        f.write(markdown(data, args))
    charts(data, args, f"{args.out}.png")
    print(markdown(data, args))


if __name__ == "__main__":
    main()
