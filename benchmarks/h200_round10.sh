#!/usr/bin/env bash
# Round 10 on one H200 (PyTorch only): the head's 1 x 1 branches as one Triton MLP (fuse_heads).
#   bash benchmarks/h200_round10.sh explore OUT   CUDA tests of the fused head; the network part by part;
#                                                 a kernel profile of the graph; the loop's steps;
#                                                 compiled fp16 graph with and without fuse_heads
# Writes flat files into OUT.
source "$(dirname "$0")/h200_common.sh" "$@"
W=/tmp/round10
mkdir -p "$W"
F=pytorch:fp16+channels_last+fuse_batchnorm+compile+max_autotune+pipeline_graph
FH=pytorch:fp16+channels_last+fuse_batchnorm+fuse_heads+compile+max_autotune+pipeline_graph
case "$part" in
explore)
  timeout 120 python3 -m pytest -q -p no:cacheprovider -m cuda tests/model/test_fused_head.py > "$OUT/cuda_tests.txt" 2>&1
  tail -3 "$OUT/cuda_tests.txt"
  timeout 120 python3 benchmarks/network_parts.py --config j6gen2_base --out "$OUT/network_parts.md" > /dev/null 2>"$OUT/network_parts.err"
  cat "$OUT/network_parts.md"; tail -3 "$OUT/network_parts.err"
  timeout 90 python3 benchmarks/profile_loop.py --device cuda --frames 80 > "$OUT/profile_loop_steps.txt" 2>&1
  head -30 "$OUT/profile_loop_steps.txt"
  timeout 90 python3 benchmarks/profile_pipeline.py --config j6gen2_base --top 45 \
      --variant pytorch:fp16+channels_last+fuse_batchnorm+fuse_relu+fuse_heads+pipeline_graph \
      --out "$OUT/profile_graph_fuse_heads.md" > /dev/null 2>"$OUT/profile_graph.err"; tail -3 "$OUT/profile_graph.err"
  timeout 300 "${CLI[@]}" benchmark -c j6gen2_base --device cuda --warmup 20 -n 50 -v "$FH" -v "$F" --no-scaling \
      --no-plots -o "$W/j6" > "$OUT/j6gen2_side_by_side.log" 2>&1
  cp "$W"/j6/*.md "$OUT/" 2>/dev/null; tail -30 "$OUT/j6gen2_side_by_side.log"
  ;;
esac
