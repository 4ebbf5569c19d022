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
  startup_and_default_loops 170
  ;;
*) echo "unknown part $part"; exit 2 ;;
esac
