"""Every v1/v2/v3 classifier's measured batch-1 latency and batch-32 throughput beside its reported ImageNet top-1:
the papers' accuracy-vs-cost figure, one series per runtime (`bench.zoo.zoo_runtimes`: eager as created, the
library's best path `optimized`, `int8`, the INT8 ONNX file of `mobilevitv3.export.quantize` in onnxruntime, and,
where the CPU has native bf16 and OpenVINO is installed, `openvino-bf16`).

    python benchmarks/zoo_latency.py [--models PATTERN...] [--runtimes eager optimized ...] [--threads 2]
        [--runs 50] [--batch 32] [--throughput-runs 5] [--out benchmarks/zoo_latency]

Latency: `mobilevitv3.bench.timing.benchmark` (each runtime in its own worker, alternating rounds), batch 1,
256x256, fp32 input, with the FLOP limit (2 x true MACs / this CPU's SGEMM rate); throughput: images/s at
`--batch` (0: none) over `--throughput-runs` calls after 3 warm-up ones (the INT8 file has a fixed batch of 1: its
batch runs image by image, marked `*`). Top-1: `bench.zoo.REPORTED_TOP1` (the official READMEs; labelled
"reported"). Writes OUT.json, OUT.md and OUT.png (a latency panel, and a throughput panel with --batch).
"""
from __future__ import annotations

import argparse
import json
import time

from mobilevitv3 import list_models
from mobilevitv3.bench.chart import accuracy_chart
from mobilevitv3.bench.zoo import speed, speed_series, speed_table, zoo_runtimes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["mobilevit_*", "mobilevitv2_*", "mobilevitv3_*"])
    p.add_argument("--runtimes", nargs="+", default=zoo_runtimes())
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--batch", type=int, default=32, help="throughput batch (0: latency only)")
    p.add_argument("--throughput-runs", type=int, default=5)
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--out", default="benchmarks/zoo_latency")
    args = p.parse_args()
    names = sorted({n for pattern in args.models for n in list_models(pattern, task="classification")})
    report = speed(names, runtimes=args.runtimes, threads=args.threads, runs=args.runs, batch=args.batch,
                   throughput_runs=args.throughput_runs, image_size=args.image_size)
    with open(f"{args.out}.json", "w") as f:
        json.dump(report, f, indent=1)
    panels = {"measured latency (ms, batch 1, log scale)": speed_series(report, "latency_ms_median")}
    if args.batch:
        panels[f"measured throughput (images/s, batch {args.batch}, log scale)"] = speed_series(
            report, "throughput_img_s")
    env = report["environment"]
    accuracy_chart(panels, f"{args.out}.png", title=f"ImageNet-1k top-1 (reported) vs speed measured on "
                   f"{env['cpu']}, {env['threads']} threads, {args.image_size}x{args.image_size} "
                   f"({time.strftime('%Y-%m-%d')})")
    table = speed_table(report)
    with open(f"{args.out}.md", "w") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    main()
