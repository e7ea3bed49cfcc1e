#!/usr/bin/env bash
# The linter, then the test suite (CPU, about 20 minutes), with the phone runtimes (ExecuTorch, TFLite) and OpenVINO
# installed so that their export and quantization tests run rather than skip. Tests that load OpenVINO run in a
# pytest process of their own: its runtime threads, once loaded, have crashed later in-process PyTorch training.
set -euo pipefail
MOBILEVITV3_EXTRAS="dev,executorch,tflite,openvino"
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
.venv/bin/ruff check src tests benchmarks hubconf.py
status=0
for selection in "not openvino" "openvino"; do
  rc=0
  .venv/bin/python -m pytest -q -m "$selection" "$@" || rc=$?
  [ "$rc" = 5 ] && rc=0          # the arguments selected no test of this part
  [ "$rc" = 0 ] || status=$rc
done
exit "$status"
