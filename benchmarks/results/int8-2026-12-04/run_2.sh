#!/usr/bin/env bash
# The 99.9999th percentile (now quantize's default) and OpenVINO's default INT8 through the CLI, on the checkpoints of
# run.sh. Run before PERCENTILE changed in export/calibration.py, with the module constant set for the command; with
# today's code, `mobilevitv3 quantize ...` without --method does the same.
set -u
MV=.venv/bin/mobilevitv3
T=runs
P="import sys, mobilevitv3.export.calibration as c; c.PERCENTILE = 99.9999; from mobilevitv3.cli import main; sys.exit(main(sys.argv[1:]))"
$MV quantize $T/digits-xxs/best.pt --calib digits --format openvino -o digits-xxs.nncf-default.openvino.xml > digits-xxs.nncf-default.openvino.q.json
$MV eval digits-xxs.nncf-default.openvino.xml --data digits > digits-xxs.nncf-default.openvino.eval.json
for spec in "digits-xxs digits 256 onnx onnx" "digits-xxs digits 256 executorch pte" "scenes-det-s0 scenes 64 executorch pte" \
            "scenes-det-s0 scenes 64 onnx onnx" "scenes-seg-s0 scenes 64 onnx onnx" "scenes-seg-s0 scenes 64 executorch pte"; do
  set -- $spec
  .venv/bin/python -c "$P" quantize $T/$1/best.pt --calib $2 --calib-images $3 --format $4 --no-speed-check \
      -o $1.percentile-99.9999.$5 > $1.percentile-99.9999.$4.q.json
  $MV eval $1.percentile-99.9999.$5 --data $2 > $1.percentile-99.9999.$4.eval.json
done
