#!/usr/bin/env bash
# Round 9 on one H200 (PyTorch only): the dataset loop after the node's fixed-shape decode and the
# queued pipeline runs (evaluate reads a batch's boxes after queueing the next).
#   bash benchmarks/h200_round9.sh loop OUT      CUDA tests of the touched suites; the node view's cost;
#                                                evaluate against the pipeline, 1 sweep (160 frames) and 10 (40)
# Writes flat files into OUT.
source "$(dirname "$0")/h200_common.sh" "$@"
W=/tmp/round9
mkdir -p "$W"
G=pytorch:fp16+channels_last+fuse_batchnorm+fuse_relu+pipeline_graph
case "$part" in
loop)
  timeout 150 python3 -m pytest -q -p no:cacheprovider -m cuda tests/benchmark/test_pipeline_graph.py tests/evaluate \
      tests/postprocess tests/data > "$OUT/cuda_tests.txt" 2>&1; tail -3 "$OUT/cuda_tests.txt"
  timeout 120 python3 benchmarks/views_cost.py --config demo --device cuda \
      --checkpoint centerpoint_deploy/assets/demo_centerpoint.pth > "$OUT/views_cost.md" 2>&1; cat "$OUT/views_cost.md"
  timeout 240 python3 benchmarks/evaluate_throughput.py --device cuda --frames 160 --sweeps 1 --variant "$G" \
      --variant pytorch:fp32 --batch-size 1 --batch-size 8 --out "$W/e1" > "$OUT/evaluate_throughput_160.md" 2>&1
  tail -7 "$OUT/evaluate_throughput_160.md"
  timeout 150 python3 benchmarks/evaluate_throughput.py --device cuda --frames 40 --sweeps 10 --variant "$G" \
      --variant pytorch:fp32 --batch-size 1 --out "$W/e10" > "$OUT/evaluate_throughput_40_10sweeps.md" 2>&1
  tail -5 "$OUT/evaluate_throughput_40_10sweeps.md"
  ;;
esac
