"""Model-zoo summaries: counts behind `mobilevitv3 list` and `mobilevitv3 ablation` (counted, never copied), and the
speed of every classifier beside its reported top-1 (`speed`, `speed_table`, `speed_series`; the papers'
accuracy-vs-cost figure, drawn by `chart.accuracy_chart`)."""
from __future__ import annotations

import importlib.util

from ..models import ABLATION, create_model, list_models
from ..models.backbone import MobileViT
from ..models.config import PAPER
from .counting import official_macs, param_count, true_macs
from .timing import BenchConfig, benchmark

# ImageNet-1k top-1 (%) of the released checkpoints at 256x256, as reported -- never measured here (no ImageNet):
# MobileViTv3: the official MobileViTv3 README (micronDLA/MobileViTv3); MobileViTv1 and v2: the ml-cvnets model zoo
# (docs/source/en/general/README-model-zoo.md; v1 "legacy" CVNets v0.1 weights). The L2 variants and v3-1.25...2.0
# have no reported figure there.
REPORTED_TOP1: dict[str, float] = {
    "mobilevitv3_s": 79.3, "mobilevitv3_xs": 76.7, "mobilevitv3_xxs": 70.98,
    "mobilevitv3_100": 78.64, "mobilevitv3_075": 76.55, "mobilevitv3_050": 72.33,
    "mobilevit_xxs": 69.0, "mobilevit_xs": 74.7, "mobilevit_s": 78.3,
    "mobilevitv2_050": 70.18, "mobilevitv2_075": 75.56, "mobilevitv2_100": 78.09, "mobilevitv2_125": 79.65,
    "mobilevitv2_150": 80.38, "mobilevitv2_175": 80.84, "mobilevitv2_200": 81.17,
}


def _row(model, name: str, image_size: int) -> dict:
    return {"name": name, "params": param_count(model), "macs": official_macs(model, image_size),
            "true_macs": true_macs(model, image_size)}


def describe(pattern: str = "*", *, image_size: int = 256, tags: bool = False) -> list[dict]:
    """Parameters (exact), official-profiler MACs and true MACs per model, beside the reported figures."""
    rows = []
    for name in list_models(pattern, tags=tags):
        row = _row(create_model(name), name, image_size)
        arch = name.split(".")[0]
        if arch in PAPER:
            row["reported_params_m"], row["reported_macs_m"] = PAPER[arch]
        rows.append(row)
    return rows


def ablation(image_size: int = 256) -> list[dict]:
    """The paper's block ablation: MobileViTv1-S with the four MobileViTv3 changes applied one after another."""
    return [{**_row(MobileViT(cfg), label, image_size),
             "block": {k: getattr(cfg.block, k) for k in ("fusion_kernel", "fuse", "residual", "local_dw")}}
            for label, cfg in ABLATION.items()]


def table(rows: list[dict]) -> str:
    """Plain-text table for humans."""
    lines = [f"{'model':44s} {'params':>11s} {'MACs (M)':>10s} {'true MACs':>10s}  reported"]
    for r in rows:
        rep = (f"{r['reported_params_m']}M / {r['reported_macs_m']}M" if "reported_params_m" in r else "")
        macs = f"{r['macs'] / 1e6:>10.3f} {r['true_macs'] / 1e6:>10.1f}"
        lines.append(f"{r['name']:44s} {r['params']:>11,d} {macs}  {rep}")
    return "\n".join(lines)


def zoo_runtimes() -> list[str]:
    """The series of the zoo figure on this machine: eager as created, the library's `optimized` path, the INT8
    ONNX file in onnxruntime and, where the CPU has native bf16 and OpenVINO is installed, OpenVINO bf16."""
    from ..export import bf16
    runtimes = ["eager", "optimized"]
    if importlib.util.find_spec("onnxruntime") is not None:
        runtimes.append("int8")
    if bf16.available():
        runtimes.append("openvino-bf16")
    return runtimes


def speed(names: list[str], *, runtimes: list[str], threads: int = 2, runs: int = 50, batch: int = 32,
          throughput_runs: int = 5, image_size: int = 256) -> dict:
    """Batch-1 latency (`runs` calls, against the FLOP limit) and, with `batch` > 0, throughput at that batch of
    every model in every runtime: the `bench.timing.benchmark` report."""
    cfg = BenchConfig(runtimes=tuple(runtimes), threads=threads, runs=runs, warmup=5, chunk=5, train=False,
                      flop_limit=True, image_size=image_size, throughput_batch=batch,
                      throughput_runs=throughput_runs)
    return benchmark(names, cfg)


def speed_series(report: dict, metric: str) -> dict[str, list[tuple[str, float, float]]]:
    """(name, `metric` of the runtime, reported top-1) per runtime of a `speed` report, for the models with a
    reported top-1; metric "latency_ms_median" or "throughput_img_s"."""
    series: dict[str, list[tuple[str, float, float]]] = {}
    for runtime in report["config"]["runtimes"]:
        series[f"ours {runtime}"] = [(r["name"], stats[metric], REPORTED_TOP1[r["name"]])
                                     for r in report["results"] if r["name"] in REPORTED_TOP1
                                     and (stats := r["runtimes"].get(f"ours/{runtime}")) and stats.get(metric)]
    return series


def _cells(stats: dict | None, with_throughput: bool) -> list[str]:
    if not stats:
        return ["--", "--"] if with_throughput else ["--"]
    cells = [f"{stats['latency_ms_median']:.1f} ({stats['vs_flop_limit']:.1f}x)" if "vs_flop_limit" in stats
             else f"{stats['latency_ms_median']:.1f}"]
    if with_throughput:
        sliced = "*" if stats.get("graph_batch") == "static" else ""
        cells.append(f"{stats['throughput_img_s']:.0f}{sliced}")
    return cells


def speed_table(report: dict) -> str:
    """A `speed` report as Markdown: per runtime, batch-1 median latency (ms, x the FLOP limit) and, when measured,
    the throughput batch's images/s (`*`: a fixed-batch-1 file, the batch run image by image)."""
    cfg, env = report["config"], report["environment"]
    runtimes, batch = cfg["runtimes"], cfg["throughput_batch"]
    head = [f"{r} ms (x FLOP limit)" for r in runtimes]
    if batch:
        head = [h for r, h in zip(runtimes, head) for h in (h, f"{r} img/s @{batch}")]
    lines = [f"{env['cpu']}, {env['threads']} threads, SGEMM {env['sgemm_gflops']:.0f} GFLOP/s, {env['date']}, "
             f"load {env['loadavg_before'][0]} before, max {env['loadavg_during_max']} during; batch-1 latency"
             + (f", batch-{batch} throughput" if batch else "") + f", {cfg['image_size']}x{cfg['image_size']}, fp32 "
             "input", "",
             "| model | top-1 (reported) | params | true MACs | FLOP limit ms | " + " | ".join(head) + " |",
             "|---|---:|---:|---:|---:|" + "---:|" * len(head)]
    for row in report["results"]:
        cells = [c for r in runtimes for c in _cells(row["runtimes"].get(f"ours/{r}"), bool(batch))]
        top1 = REPORTED_TOP1.get(row["name"])
        lines.append(f"| {row['name']} | {top1 if top1 else '--'} | {row['params'] / 1e6:.2f}M | "
                     f"{row['macs_true'] / 1e6:.0f}M | {row['flop_limit_ms']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
