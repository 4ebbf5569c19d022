#!/usr/bin/env bash
# Round 21 on one H200 (PyTorch only), one call on a fresh machine:
#   bash benchmarks/h200_round21.sh warmup OUT   CUDA's context made in a thread while torch imports (cuda_warmup):
#                                                its tests and the loader's, CUDA ones included; seven evaluate runs
#                                                under startup_phases.py, the first to fill the page cache, then
#                                                with and without the warm-up in turn (OUT/startup_phases.md)
#   bash benchmarks/h200_round21.sh check OUT    with the warm-up (the readers now fork after CUDA's start): the CUDA
#                                                tests; the steady 1-sweep loop with the defaults (200 frames)
# Writes flat files into OUT.
source "$(dirname "$0")/h200_common.sh" "$@"
case "$part" in
warmup)
  timeout 90 python3 -m pytest -q -p no:cacheprovider tests/test_cuda_warmup.py tests/data/test_loader.py \
      > "$OUT/tests.txt" 2>&1; tail -1 "$OUT/tests.txt"
  one_sweep_scene
  startup_run 0
  for i in 1 3 5; do startup_run $i; startup_run $((i + 1)) --no-cuda-warmup; done
  for i in 0 1 2 3 4 5 6; do
    flag=with; [ $((i % 2)) = 0 ] && [ $i != 0 ] && flag=without
    { echo "### run $i ($flag the warm-up)"; cat "$OUT/startup_phases_$i.md"; echo; } >> "$OUT/startup_phases.md"
    rm "$OUT/startup_phases_$i.md"
  done
  ;;
check)
  timeout 110 python3 -m pytest -q -p no:cacheprovider -m cuda tests > "$OUT/cuda_tests.txt" 2>&1
  tail -1 "$OUT/cuda_tests.txt"
  one_sweep_scene
  steady_loop 1 200 150
  ;;
*) echo "unknown part $part"; exit 2 ;;
esac
