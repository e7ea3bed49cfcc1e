#!/usr/bin/env bash
# The main job: train MobileViTv3-XXS from scratch on the embedded handwritten digits (CPU, about a minute).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
exec .venv/bin/mobilevitv3 train --model mobilevitv3_xxs --out runs/digits-xxs "$@"
