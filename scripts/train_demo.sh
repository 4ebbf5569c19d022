#!/usr/bin/env bash
# Trains the shipped demo model (centerpoint_deploy/assets/demo_centerpoint.pth) on a GPU:
# generates synthetic T4 training scenes (seeds TRAIN_SEED0 .. TRAIN_SEED0+SCENES-1, never
# the validation sample's seed 7), then trains the `demo` preset.
#   bash scripts/train_demo.sh OUT_DIR
# Environment overrides: SCENES (32), FRAMES (40), EPOCHS (12), BATCH (8), LR (2e-3),
# TRAIN_SEED0 (100), JOBS (parallel generators, default: CPU count).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: train_demo.sh OUT_DIR}
scenes=${SCENES:-32}; frames=${FRAMES:-40}; epochs=${EPOCHS:-12}; batch=${BATCH:-8}; lr=${LR:-2e-3}
seed0=${TRAIN_SEED0:-100}; jobs=${JOBS:-$(nproc)}
cli=(python3 -m centerpoint_deploy)
mkdir -p "$out/train" && out=$(cd "$out" && pwd)
start=$(date +%s)
seq "$seed0" $((seed0 + scenes - 1)) | xargs -P "$jobs" -I{} \
  "${cli[@]}" synth "$out/train/seed{}" --scenes 1 --frames "$frames" --seed {} >/dev/null
echo "generated $scenes scenes x $frames frames in $(( $(date +%s) - start )) s"
ls -d "$out"/train/seed*/synth-* > "$out/train_scenes.txt"
"${cli[@]}" train --config demo --dataset "$out/train_scenes.txt" --out "$out/model" \
  --epochs "$epochs" --batch-size "$batch" --lr "$lr" --device cuda --amp --workers 8 \
  --log-every 50 --half-checkpoint
echo "total $(( $(date +%s) - start )) s"
