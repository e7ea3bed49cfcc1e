#!/usr/bin/env bash
# The linter, then the test suite (CPU, about 15 minutes), with the phone runtimes (ExecuTorch, TFLite) installed so that their
# export and quantization tests run rather than skip; OpenVINO and NNCF likewise.
set -euo pipefail
MOBILEVITV3_EXTRAS="dev,executorch,tflite,openvino"
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
.venv/bin/ruff check src tests benchmarks hubconf.py
exec .venv/bin/python -m pytest -q "$@"
