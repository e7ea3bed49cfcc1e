"""Does `mobilevitv3 bench` print what a plain script measures? Times the same configuration both ways, alternating,
each measurement in a fresh process: a plain script (create_model, torch.set_num_threads, a loop of timed forwards
in inference mode, the median) against the CLI's median (its harness: a worker process, rounds, JSON).

    python benchmarks/cli_vs_script.py [--models mobilevitv3_xxs mobilevit_xxs] [--threads 2] [--runs 200]
        [--repeats 3] [--image-size 256] [--fuse] [--channels-last]

Prints one JSON line per measurement and a summary per model: the CLI / script ratio of medians (target: within 5%).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def plain(name: str, threads: int, runs: int, warmup: int, size: int, fuse: bool, channels_last: bool) -> float:
    """What a user would write: the median latency in ms of `runs` batch-1 forwards."""
    import torch

    import mobilevitv3
    torch.set_num_threads(threads)
    model = mobilevitv3.create_model(name).eval()
    if fuse:
        model = mobilevitv3.fuse(model)
    x = torch.randn(1, 3, size, size)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        for _ in range(runs):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def run_plain(args: argparse.Namespace, name: str) -> float:
    flags = [f"--{k}" for k in ("fuse", "channels-last") if getattr(args, k.replace("-", "_"))]
    out = subprocess.run([sys.executable, __file__, "--plain", name, "--threads", str(args.threads), "--runs",
                          str(args.runs), "--warmup", str(args.warmup), "--image-size", str(args.image_size), *flags],
                         check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def run_cli(args: argparse.Namespace, name: str) -> float:
    flags = [f"--{k}" for k in ("fuse", "channels-last") if getattr(args, k.replace("-", "_"))]
    exe = os.path.join(os.path.dirname(sys.executable), "mobilevitv3")
    out = subprocess.run([exe, "bench", name, "--threads", str(args.threads), "--runs", str(args.runs), "--warmup",
                          str(args.warmup), "--image-size", str(args.image_size), "--no-train", *flags],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["results"][0]["latency_ms_median"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plain", metavar="NAME", help=argparse.SUPPRESS)   # the child: one plain measurement
    p.add_argument("--models", nargs="+", default=["mobilevitv3_xxs", "mobilevit_xxs", "mobilevitv3_050"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3, help="alternating script/CLI pairs per model")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--fuse", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    args = p.parse_args()
    if args.plain:
        print(plain(args.plain, args.threads, args.runs, args.warmup, args.image_size, args.fuse, args.channels_last))
        return
    for name in args.models:
        script, cli = [], []
        for i in range(args.repeats):   # alternate which goes first, so drift hits both alike
            first, second = (run_plain, run_cli) if i % 2 == 0 else (run_cli, run_plain)
            for fn in (first, second):
                ms = fn(args, name)
                (script if fn is run_plain else cli).append(ms)
                print(json.dumps({"model": name, "how": "script" if fn is run_plain else "cli", "median_ms": ms,
                                  "loadavg": os.getloadavg()[0]}), flush=True)
        ratio = statistics.median(cli) / statistics.median(script)
        print(json.dumps({"model": name, "script_ms": statistics.median(script), "cli_ms": statistics.median(cli),
                          "cli_over_script": round(ratio, 3), "threads": args.threads, "runs": args.runs}), flush=True)


if __name__ == "__main__":
    main()
