"""`mobilevitv3 bench NAME...`: latency / throughput / training-step / memory benchmark, each implementation and
runtime in a worker process of its own, timed in alternating rounds (`bench.timing`), optionally against timm."""
from __future__ import annotations

import argparse
import tempfile
from dataclasses import fields, replace
from pathlib import Path

from ..bench.chart import chart
from ..bench.runtimes import RUNTIMES
from ..bench.timing import PRESETS, BenchConfig, benchmark
from ..errors import UserError

DEFAULTS = BenchConfig()


def add_arguments(p: argparse.ArgumentParser) -> None:
    # Defaults are None so that explicit flags override a preset, which overrides BenchConfig's defaults.
    p.add_argument("names", nargs="+", metavar="NAME", help="model names or shell patterns ('mobilevitv2_*')")
    p.add_argument("--device", choices=["cpu", "cuda"])
    p.add_argument("--batch-size", type=int, help=f"latency batch (default {DEFAULTS.batch_size})")
    p.add_argument("--image-size", type=int, help=f"square input side (default {DEFAULTS.image_size})")
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], help="bf16/fp16: autocast (default fp32)")
    p.add_argument("--channels-last", action="store_true", default=None,
                   help="channels-last model and input, every implementation (default: NCHW, as created)")
    p.add_argument("--runtime", dest="runtimes", nargs="+", choices=list(RUNTIMES),
                   help="one or more, each in its own worker: eager, compiled (torch.compile), optimized "
                        "(mobilevitv3.optimize, ours only), onnxruntime (our ONNX export), executorch (XNNPACK), "
                        "int8 (our INT8 ONNX file in onnxruntime), openvino (our OpenVINO IR, f32), openvino-bf16 "
                        "(the IR in bf16); default eager")
    p.add_argument("--compile", action="store_true", help="same as --runtime compiled")
    p.add_argument("--vs", choices=["timm"], help="also time timm's model of the same architecture, alternating")
    p.add_argument("--threads", type=int, help="threads of every worker (default: every core this process may use)")
    p.add_argument("--fuse", action="store_true", default=None, help="fold BatchNorm into convs first (ours)")
    p.add_argument("--flop-limit", action="store_true", default=None,
                   help="measure this CPU's SGEMM rate and report every latency against 2 x MACs / that rate")
    p.add_argument("--preset", choices=sorted(PRESETS), help="official: the paper protocol (batch-1 latency, "
                   "batch-100 throughput, 256x256, fp32, 10,000 / 1,000 runs)")
    p.add_argument("--warmup", type=int, help=f"untimed calls first (default {DEFAULTS.warmup})")
    p.add_argument("--runs", type=int, help=f"timed latency calls (default {DEFAULTS.runs})")
    p.add_argument("--chunk", type=int, help=f"timed calls per worker per round (default {DEFAULTS.chunk}; "
                   "a lone worker makes all its runs in one turn)")
    p.add_argument("--throughput-batch", type=int, help="separate throughput batch (default: from the latency runs)")
    p.add_argument("--throughput-runs", type=int, help=f"(default {DEFAULTS.throughput_runs})")
    p.add_argument("--no-train", dest="train", action="store_false", default=None, help="skip the training step")
    p.add_argument("--train-batch", type=int, help="training-step batch (default max(2, batch size))")
    p.add_argument("--train-runs", type=int, help=f"(default {DEFAULTS.train_runs})")
    p.add_argument("--chart", metavar="PATH", help="write a latency-vs-parameters PNG")


def _check_chart_path(path: str) -> None:
    """Before minutes of timing: the chart's folder exists (or can be made) and is writable."""
    folder = Path(path).resolve().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as e:
        raise UserError(f"--chart {path}: cannot write into {folder} ({e.strerror or e})") from None


def run(args: argparse.Namespace) -> dict:
    if args.chart:
        _check_chart_path(args.chart)
    cfg = replace(DEFAULTS, **PRESETS.get(args.preset, {}))
    explicit = {f.name: getattr(args, f.name) for f in fields(BenchConfig)
                if getattr(args, f.name, None) is not None}
    if args.compile:
        explicit["runtimes"] = tuple(dict.fromkeys([*explicit.get("runtimes", ()), "compiled"]))
    if "runtimes" in explicit:
        explicit["runtimes"] = tuple(explicit["runtimes"])
    report = benchmark(args.names, replace(cfg, **explicit))
    if args.chart:
        chart(report, args.chart)
        report["chart"] = args.chart
    return report
