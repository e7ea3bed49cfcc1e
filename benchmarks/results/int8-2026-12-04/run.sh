#!/usr/bin/env bash
# fp32 vs INT8 (minmax / percentile) through the CLI, ORT and ExecuTorch, on the three trained checkpoints
set -u
MV=.venv/bin/mobilevitv3
T=runs   # scripts/main.sh's digits run and the quiet scene runs (seed 0)
for spec in "digits-xxs/best.pt digits 256" "scenes-seg-s0/best.pt scenes 64" "scenes-det-s0/best.pt scenes 64"; do
  set -- $spec; ck=$T/$1; data=$2; n=$3; tag=$(dirname $1)
  $MV eval $ck --data $data > $tag.fp32.json 2> $tag.fp32.err
  for fmt in onnx executorch; do
    ext=$([ $fmt = onnx ] && echo onnx || echo pte)
    for m in minmax percentile; do
      s=$(date +%s)
      $MV quantize $ck --calib $data --calib-images $n --format $fmt --method $m -o $tag.$m.$ext > $tag.$m.$fmt.q.json 2> $tag.$m.$fmt.q.err
      $MV eval $tag.$m.$ext --data $data > $tag.$m.$fmt.eval.json 2> $tag.$m.$fmt.eval.err
      echo "$tag $fmt $m rc=$? $(( $(date +%s) - s ))s"
    done
  done
done
