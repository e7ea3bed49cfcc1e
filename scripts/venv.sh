#!/usr/bin/env bash
# Creates .venv/ at the repository root when missing (or when pyproject.toml or the wanted extras changed) and
# installs the project with the extras in MOBILEVITV3_EXTRAS (default: dev). test.sh asks for the phone runtimes too
# (executorch, tflite), so the deployment tests run in CI instead of skipping. torch/torchvision are pinned in
# pyproject.toml; pip takes them from the machine's local wheel cache. Sourced by main.sh and test.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="$(command -v python3.11 || command -v python3)"
extras="${MOBILEVITV3_EXTRAS:-dev}"
stamp=".venv/.installed-${extras//,/-}"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setting up .venv with [$extras] (first run takes a few minutes) ..." >&2
  [ -x .venv/bin/python ] || "$py" -m venv .venv
  .venv/bin/python -m pip install --quiet -e ".[$extras]" >&2
  echo "$want" > "$stamp"
fi
