"""Markdown tables from the JSON reports `benchmarks/gpu.sh` leaves in its output folder (a missing one is skipped).

    python benchmarks/gpu.py OUT_DIR
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

RUNS = {"bf16_b256.json": "bf16 autocast, channels-last, batch 256 (training step: batch 128)",
        "bf16_b256_compiled.json": "bf16 autocast, channels-last, batch 256, torch.compile",
        "official.json": "paper section 4.4 protocol: fp32, batch-1 latency (CUDA events), batch-100 throughput"}


def table(report: dict) -> list[str]:
    env = report["environment"]
    lines = [f"{env.get('gpu')}, torch {env['torch']}, {env['date']}", "",
             "| model | impl/runtime | latency ms (median) | images/s | train images/s | ours / timm (latency) |",
             "|---|---|---:|---:|---:|---:|"]
    for row in report["results"]:
        for label, s in row["runtimes"].items():
            ratio = row.get("vs_timm_by_runtime", {}).get(label.split("/")[1], {}).get("latency_ms_median")
            shown = f"{ratio:.2f}" if ratio and label.startswith("ours") else ""
            lines.append(f"| {row['name']} | {label} | {s['latency_ms_median']:.2f} | {s['throughput_img_s']:.0f} | "
                         f"{s.get('train_img_s') or 0:.0f} | {shown} |")
    return lines


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/gpu-results")
    for name, title in RUNS.items():
        path = out / name
        try:
            report = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            print(f"### {title}\n\n(no result: {path} missing or incomplete)\n")
            continue
        print(f"### {title}\n")
        print("\n".join(table(report)) + "\n")


if __name__ == "__main__":
    main()
