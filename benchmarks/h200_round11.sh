#!/usr/bin/env bash
# Round 11 on one H200 (PyTorch only): the dataset loop after the shared reader slots and the node's
# NMS on the device, in parts that each fit a 10-minute device call:
#   bash benchmarks/h200_round11.sh check OUT    CUDA tests of the touched suites; the node view's steps
#                                                (its selection as one graph replay: GPU time); the loader alone
#   bash benchmarks/h200_round11.sh loop OUT     evaluate against the pipeline, 1 sweep (160 frames) and 10 (40);
#                                                the loop's steps on the main thread
# Round 10's latency and batch parts are `benchmarks/h200_round10.sh latency|amp OUT`.
# What changed since round 10: readers hand frames over in shared slots page-locked in place, the
# loader uploads a batch ahead; the node's circle and IoU-BEV NMS run in fixed shapes on the GPU,
# recorded with its decode on a copy of the pipeline graph's head outputs and replayed on a side
# stream (the host reads only kept boxes).
# Writes flat files into OUT.
source "$(dirname "$0")/h200_common.sh" "$@"
W=/tmp/round11
mkdir -p "$W"
G=pytorch:fp16+channels_last+fuse_batchnorm+fuse_relu+pipeline_graph
case "$part" in
check)
  timeout 200 python3 -m pytest -q -p no:cacheprovider -m cuda tests/benchmark/test_pipeline_graph.py tests/evaluate \
      tests/postprocess tests/data > "$OUT/cuda_tests.txt" 2>&1; tail -4 "$OUT/cuda_tests.txt"
  timeout 120 python3 benchmarks/views_cost.py --config demo --device cuda \
      --checkpoint centerpoint_deploy/assets/demo_centerpoint.pth > "$OUT/views_cost.md" 2>&1; cat "$OUT/views_cost.md"
  timeout 90 python3 benchmarks/read_frames.py --frames 40 --sweeps 1 --loader --workers 1 2 4 \
      > "$OUT/read_frames_loader.md" 2>&1; cat "$OUT/read_frames_loader.md"
  ;;
loop)
  timeout 200 python3 benchmarks/evaluate_throughput.py --device cuda --frames 160 --sweeps 1 --variant "$G" \
      --variant pytorch:fp32 --batch-size 1 --batch-size 8 --out "$W/e1" > "$OUT/evaluate_throughput_160.md" 2>&1
  tail -7 "$OUT/evaluate_throughput_160.md"
  timeout 150 python3 benchmarks/evaluate_throughput.py --device cuda --frames 40 --sweeps 10 --variant "$G" \
      --variant pytorch:fp32 --batch-size 1 --out "$W/e10" > "$OUT/evaluate_throughput_40_10sweeps.md" 2>&1
  tail -5 "$OUT/evaluate_throughput_40_10sweeps.md"
  timeout 120 python3 benchmarks/profile_loop.py --device cuda --frames 80 --variant "$G" \
      > "$OUT/profile_loop_steps.txt" 2>&1; grep "^|" "$OUT/profile_loop_steps.txt" | head -16
  ;;
esac
