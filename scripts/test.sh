#!/usr/bin/env bash
# The test suite (CPU, a few minutes).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
exec .venv/bin/python -m pytest -q "$@"
