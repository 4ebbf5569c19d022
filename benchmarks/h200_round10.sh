#!/usr/bin/env bash
# Round 10 on one H200 (PyTorch only), in parts that each fit a 10-minute device call:
#   bash benchmarks/h200_round10.sh latency OUT  CUDA tests of the fused head and neck; the network part
#                                                by part; j6gen2_base side by side with eager fp32
#   bash benchmarks/h200_round10.sh amp OUT      j6gen2_base_amp (1020 x 1020) side by side; batches of the
#                                                compiled graph with the fused head and neck
# What changed since round 9: fuse_heads (a task's 1 x 1 branches as one Triton MLP) and fuse_neck
# (the neck's kernel == stride branches as matmuls into one concatenated map).
# Writes flat files into OUT.
source "$(dirname "$0")/h200_common.sh" "$@"
W=/tmp/round10
mkdir -p "$W"
B=pytorch:fp16+channels_last+fuse_batchnorm
F="$B+compile+max_autotune+pipeline_graph"                       # round 8's fastest
FN="$B+fuse_heads+fuse_neck+compile+max_autotune+pipeline_graph"  # this round's
G="$B+fuse_relu+fuse_heads+fuse_neck+pipeline_graph"              # uncompiled
case "$part" in
latency)
  timeout 120 python3 -m pytest -q -p no:cacheprovider -m cuda tests/model > "$OUT/cuda_tests.txt" 2>&1
  tail -3 "$OUT/cuda_tests.txt"
  timeout 120 python3 benchmarks/network_parts.py --config j6gen2_base --out "$OUT/network_parts.md" > /dev/null \
      2>"$W/network_parts.err"; cat "$OUT/network_parts.md"; tail -3 "$W/network_parts.err"
  timeout 400 "${CLI[@]}" benchmark -c j6gen2_base --device cuda --warmup 20 -n 50 -v pytorch:fp32 -v "$FN" -v "$F" \
      -v "$G" --no-scaling --no-plots -o "$W/j6" > "$W/j6.log" 2>&1
  cp "$W/j6/benchmark.md" "$OUT/j6gen2_side_by_side.md"; cp "$W/j6/benchmark.json" "$OUT/j6gen2_side_by_side.json"
  tail -14 "$W/j6.log"
  ;;
amp)
  timeout 250 "${CLI[@]}" benchmark -c j6gen2_base_amp --device cuda --warmup 20 -n 50 -v pytorch:fp32 -v "$FN" \
      --no-scaling --no-plots -o "$W/amp" > "$W/amp.log" 2>&1
  cp "$W/amp/benchmark.md" "$OUT/j6gen2_amp_side_by_side.md"; cp "$W/amp/benchmark.json" "$OUT/j6gen2_amp_side_by_side.json"
  tail -8 "$W/amp.log"
  timeout 300 python3 benchmarks/batch_throughput.py --config j6gen2_base --variant "$FN" \
      --batch 1 8 --out "$OUT/batch_compiled.json" > "$OUT/batch_compiled.md" 2>&1; tail -6 "$OUT/batch_compiled.md"
  ;;
esac
