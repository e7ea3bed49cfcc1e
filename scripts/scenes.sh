#!/usr/bin/env bash
# The dense main jobs on the embedded digit scenes (CPU): the digits classifier (scripts/main.sh, skipped when
# runs/digits-xxs/best.pt exists), then DeepLabv3 and SSDLite on MobileViTv3-XXS starting from its backbone.
# Extra arguments go to both dense trainings (e.g. --epochs 2).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
classifier=runs/digits-xxs/best.pt
[ -f "$classifier" ] || "$(dirname "${BASH_SOURCE[0]}")/main.sh"
.venv/bin/mobilevitv3 train --model deeplabv3_mobilevitv3_xxs --weights "$classifier" --out runs/scenes-seg "$@"
.venv/bin/mobilevitv3 train --model ssdlite_mobilevitv3_xxs --weights "$classifier" --out runs/scenes-det "$@"
