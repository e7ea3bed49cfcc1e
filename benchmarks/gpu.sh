#!/usr/bin/env bash
# GPU benchmark for the day a GPU is lent (one run: well under 8 minutes on a current data-centre GPU).
#   bash benchmarks/gpu.sh [OUT_DIR]          (default benchmarks/gpu-results)
# 1. bf16 inference throughput at batch 256 (autocast, channels-last), ours vs timm, eager (and compiled for two);
# 2. a training step's throughput (bf16 autocast, batch 128, forward + backward + SGD), ours vs timm;
# 3. the paper's section 4.4 protocol (official main_latency.py: fp32, batch-1 latency with CUDA events, batch-100
#    throughput; 1,000 / 100 repetitions here instead of 10,000 / 1,000 to fit the time budget).
# Every implementation runs in its own worker process (mobilevitv3.bench.timing); gpu.py renders the Markdown.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/venv.sh
OUT="${1:-benchmarks/gpu-results}"
mkdir -p "$OUT"
PAIRS="mobilevit_xxs mobilevit_s mobilevitv2_050 mobilevitv2_100"
OURS="mobilevitv3_xxs mobilevitv3_s mobilevitv3_050 mobilevitv3_100"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/gpu.txt" || true
# Each step has its own time limit; a step that runs out leaves no JSON and gpu.py skips it.
timeout 180 .venv/bin/mobilevitv3 bench $PAIRS $OURS --device cuda --dtype bf16 --channels-last --batch-size 256 \
    --runs 30 --warmup 5 --chunk 5 --vs timm --train-batch 128 --train-runs 10 > "$OUT/bf16_b256.json" || true
timeout 120 .venv/bin/mobilevitv3 bench mobilevit_xxs mobilevitv2_050 --device cuda --dtype bf16 --channels-last \
    --batch-size 256 --runs 30 --warmup 5 --chunk 5 --runtime compiled --vs timm --no-train \
    > "$OUT/bf16_b256_compiled.json" || true
timeout 150 .venv/bin/mobilevitv3 bench $PAIRS $OURS --device cuda --preset official --runs 1000 --chunk 100 \
    --throughput-runs 100 --vs timm --no-train > "$OUT/official.json" || true
.venv/bin/python benchmarks/gpu.py "$OUT" | tee "$OUT/summary.md"
