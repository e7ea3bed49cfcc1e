#!/usr/bin/env bash
# Every CPU figure of BENCHMARKS.md in one run, one measurement at a time (run it on a quiet machine, nothing else
# running: it waits for the 1-minute load average to drop below 1.0 before each step and records it).
#   bash benchmarks/cpu.sh [OUT_DIR] [STEP ...]     (default benchmarks/results/cpu-YYYY-MM-DD; all steps)
# Steps: main (the main job, bash scripts/main.sh), timm (ours vs timm, eager NCHW / channels-last and onnxruntime),
# cli (CLI vs plain script), paths (fastest fp32 path candidates), zoo (every classifier, eager / optimized / int8
# / openvino-bf16 where the CPU has bf16: batch-1 latency with the FLOP limit, batch-32 throughput), scaling (input
# size, batch, attention share), int8 (benchmarks/quantization.py), int8groups (INT8 latency per layer group kept
# float, per runtime: docs/export.md "INT8 layer groups"; not in the default steps: it lowers ~40 ExecuTorch
# programs, about an hour).
# ~60 minutes on the project's 2-core VM. Each step writes its JSON (and Markdown) into OUT_DIR; its stderr (logs and
# progress bars, not results) to runs/bench-logs/STEP.log, outside the results.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/venv.sh
OUT="${1:-benchmarks/results/cpu-$(date -u +%F)}"
shift || true
STEPS="${*:-main timm cli paths zoo scaling int8}"
mkdir -p "$OUT" runs/bench-logs
LOG=runs/bench-logs
PY=.venv/bin/python
MV=.venv/bin/mobilevitv3
BASELINES="mobilevit_xxs mobilevit_s mobilevitv2_050 mobilevitv2_100"

quiet() {   # wait (at most 3 minutes) for the machine to settle; log the load either way
    for _ in $(seq 36); do
        awk '{exit !($1 < 1.0)}' /proc/loadavg && break
        sleep 5
    done
    echo "$(date -u +%FT%TZ) $1: load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/steps.log"
}

for step in $STEPS; do
    quiet "$step"
    case "$step" in
    main)   # the README's main job, from a fresh run folder (under runs/: its checkpoints stay out of git)
        rm -rf runs/bench-main-job
        $MV train --model mobilevitv3_xxs --out runs/bench-main-job > "$OUT/main_job.json" 2> "$LOG/main_job.log"
        cp runs/bench-main-job/metrics.jsonl "$OUT/main_job_metrics.jsonl" ;;
    timm)   # same layout on both sides; the ONNX rows: each side's own export in onnxruntime
        $MV bench $BASELINES --vs timm --runtime eager onnxruntime --threads 2 --runs 100 --flop-limit --no-train \
            > "$OUT/vs_timm_nchw.json" 2> "$LOG/vs_timm_nchw.log"
        quiet "$step channels-last"
        $MV bench $BASELINES --vs timm --channels-last --threads 2 --runs 100 --no-train \
            > "$OUT/vs_timm_cl.json" 2> "$LOG/vs_timm_cl.log" ;;
    cli)
        $PY benchmarks/cli_vs_script.py --models mobilevitv3_xxs mobilevit_xxs --threads 2 --runs 200 --repeats 3 \
            > "$OUT/cli_vs_script.jsonl" 2> "$LOG/cli_vs_script.log" ;;
    paths)
        $PY benchmarks/fast_paths.py --models mobilevitv3_xxs mobilevitv3_050 --threads 2 --runs 100 \
            --out "$OUT/fast_paths.json" > "$OUT/fast_paths.md" 2> "$LOG/fast_paths.log" ;;
    zoo)
        $PY benchmarks/zoo_latency.py --threads 2 --runs 50 --batch 32 --throughput-runs 5 --out "$OUT/zoo_latency" \
            > /dev/null 2> "$LOG/zoo_latency.log" ;;
    scaling)
        $PY benchmarks/scaling.py --models mobilevitv3_xxs mobilevitv3_s mobilevitv3_050 mobilevitv3_100 \
            --batches 1 4 16 --runs 10 --out "$OUT/scaling" > /dev/null 2> "$LOG/scaling.log" ;;
    int8)   # digits classifiers trained by the step itself; dense checkpoints when scripts/scenes.sh left them
        dense=()
        for run in runs/scenes-seg runs/scenes-det; do [ -f "$run/best.pt" ] && dense+=("$run/best.pt"); done
        $PY benchmarks/quantization.py --rounds 3 --iters 30 --threads 2 ${dense[@]:+--dense "${dense[@]}"} \
            --out "$OUT/quantization" > /dev/null 2> "$LOG/quantization.log" ;;
    int8groups)
        $PY benchmarks/quantization.py --groups ort ov et --models mobilevitv3_xxs mobilevitv3_050 mobilevitv3_s \
            mobilevitv3_100 --rounds 5 --iters 30 --threads 2 --out "$OUT/quantization_groups" \
            > /dev/null 2> "$LOG/quantization_groups.log" ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
    esac
done
echo "$(date -u +%FT%TZ) done: load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/steps.log"
