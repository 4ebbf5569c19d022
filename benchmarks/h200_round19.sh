#!/usr/bin/env bash
# Round 19 on one H200 (PyTorch only), one 10-minute device call:
#   bash benchmarks/h200_round19.sh final OUT    with the command's process keeping its freed memory (glibc's mmap off,
#                                                memory.keep_freed_memory, now set by the entry point and by the
#                                                benchmark scripts): the CUDA tests of the loader, the dataset opening
#                                                and the ONNX Runtime backend, and the memory test; three evaluate runs
#                                                under startup_phases.py; the steady loop with the defaults, 1 sweep
#                                                (200 frames) and 10 sweeps (80 frames)
# Writes flat files into OUT.
source "$(dirname "$0")/h200_common.sh" "$@"
case "$part" in
final)
  timeout 60 python3 -m pytest -q -p no:cacheprovider tests/data/test_loader.py tests/data/test_opening.py \
      tests/backends/test_onnxruntime_backend.py tests/test_memory.py > "$OUT/tests.txt" 2>&1; tail -1 "$OUT/tests.txt"
  python3 -c "from centerpoint_deploy.data.synthetic import *; from pathlib import Path; generate_dataset(
      Path('$W/e1/data/synth-1sweeps'), 1, 200, 0, LidarConfig(beams=64, columns=1800), WorldConfig(), key_frame_interval=5,
      lead_in_sweeps=1)"
  for i in 1 2 3; do
    timeout 25 python3 benchmarks/startup_phases.py --dataset "$W/e1/data/synth-1sweeps" --config demo --device cuda \
        --no-plots --no-cache --max-frames 4 --out "$W/p$i" 2>/dev/null | grep '^|' > "$OUT/startup_phases_$i.md"
    grep 'imported\|dataset\|detectors built\|first frame' "$OUT/startup_phases_$i.md"
  done
  timeout 200 python3 benchmarks/evaluate_throughput.py --device cuda --frames 200 --sweeps 1 --variant "$GC" \
      --out "$W/e1" > "$W/loop1.log" 2>&1
  grep -v Warning "$W/loop1.log" | grep '^|\|^{' > "$OUT/evaluate_throughput_1sweep_default.md"; tail -1 "$W/loop1.log"
  timeout 170 python3 benchmarks/evaluate_throughput.py --device cuda --frames 80 --sweeps 10 --variant "$GC" \
      --out "$W/e10" > "$W/loop10.log" 2>&1
  grep -v Warning "$W/loop10.log" | grep '^|\|^{' > "$OUT/evaluate_throughput_10sweeps_default.md"; tail -1 "$W/loop10.log"
  ;;
*) echo "unknown part $part"; exit 2 ;;
esac
