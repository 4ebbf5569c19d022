#!/usr/bin/env bash
# Round 14 on one H200 (PyTorch only), in parts that each fit a 10-minute device call:
#   bash benchmarks/h200_round14.sh latency OUT  CUDA tests of the touched suites; j6gen2_base side by side with
#                                                eager fp32; the host time of one end-to-end graph call
#   (as run: the CLI's side by side and e2e_host_cost.py once before the changes too, as one-off commands)
#   bash benchmarks/h200_round14.sh amp OUT      j6gen2_base_amp side by side with eager fp32; the steady 1-sweep
#                                                evaluate loop, uncompiled and compiled
#   bash benchmarks/h200_round14.sh loop OUT     the loader's CUDA tests; the steady 1-sweep loop uncompiled (as run,
#                                                its 100 s limit ran out on a cold machine: now 150 s) and compiled,
#                                                and the compiled loop's steps
# Writes flat files into OUT.
source "$(dirname "$0")/h200_common.sh" "$@"
W=/tmp/round14
mkdir -p "$W"
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$W/inductor}  # the CLI's and the scripts' runs share it
B=pytorch:fp16+channels_last+fuse_batchnorm
G="$B+fuse_relu+pipeline_graph"                                   # round 11's loop variant
GC="$B+fuse_relu+compile+pipeline_graph"                          # the same, compiled
FN="$B+fuse_heads+fuse_neck+compile+max_autotune+pipeline_graph"  # compiled, both fusions
case "$part" in
latency)
  timeout 150 python3 -m pytest -q -p no:cacheprovider -m cuda tests/benchmark/test_pipeline_graph.py tests/postprocess \
      tests/evaluate > "$OUT/cuda_tests.txt" 2>&1; tail -3 "$OUT/cuda_tests.txt"
  side_by_side j6gen2_base j6gen2_side_by_side.md
  timeout 120 python3 benchmarks/e2e_host_cost.py --config j6gen2_base --variant "$FN" > "$OUT/e2e_host_cost_compiled.md" 2>&1
  head -16 "$OUT/e2e_host_cost_compiled.md"
  ;;
amp)
  side_by_side j6gen2_base_amp j6gen2_amp_side_by_side.md
  loop 120 120 1 "$G" evaluate_throughput_120_steady.md
  loop 220 80 1 "$GC" evaluate_throughput_80_compiled_steady.md
  ;;
loop)
  timeout 60 python3 -m pytest -q -p no:cacheprovider -m cuda tests/data > "$OUT/cuda_tests_data.txt" 2>&1
  tail -1 "$OUT/cuda_tests_data.txt"
  loop 150 120 1 "$G" evaluate_throughput_120_steady.md
  loop 200 80 1 "$GC" evaluate_throughput_80_compiled_steady.md
  timeout 100 python3 benchmarks/profile_loop.py --device cuda --frames 60 --variant "$GC" \
      > "$OUT/profile_loop_steps_compiled.txt" 2>&1; grep "^|" "$OUT/profile_loop_steps_compiled.txt" | head -18
  ;;
esac
