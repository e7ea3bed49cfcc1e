#!/usr/bin/env bash
# The dense main jobs on the embedded digit scenes (CPU, about 5 minutes of training each on a quiet 2-core
# machine): the digits classifier (scripts/main.sh, skipped when runs/digits-xxs/best.pt exists), then DeepLabv3
# and SSDLite on MobileViTv3-XXS starting from its backbone, then runs/scenes.png: held-out scenes with the true
# and the predicted masks and boxes. Each training also draws its curves (runs/scenes-{seg,det}/curves.png).
# Extra arguments go to both dense trainings (e.g. --epochs 2, --seed 1).
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/venv.sh"
classifier=runs/digits-xxs/best.pt
[ -f "$classifier" ] || "$here/main.sh"
.venv/bin/mobilevitv3 train --model deeplabv3_mobilevitv3_xxs --weights "$classifier" --out runs/scenes-seg "$@"
.venv/bin/mobilevitv3 train --model ssdlite_mobilevitv3_xxs --weights "$classifier" --out runs/scenes-det "$@"
.venv/bin/mobilevitv3 gallery runs/scenes-seg/best.pt runs/scenes-det/best.pt --out runs/scenes.png
