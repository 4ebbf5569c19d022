#!/usr/bin/env bash
# Round 8 on one H200 (PyTorch only: no onnxruntime-gpu needed), in two parts that each fit a
# 10-minute device call:
#   bash benchmarks/h200_round8.sh latency OUT   CUDA graph tests; j6gen2_base side by side with eager fp32
#   bash benchmarks/h200_round8.sh amp OUT       j6gen2_base_amp (1020 x 1020) side by side; batches of the compiled graph
# What changed since round 6: a captured channels-last run keeps its BEV canvas (BevCanvas).
# Writes flat files into OUT (machine.txt plus at most 6 more).
source "$(dirname "$0")/h200_common.sh" "$@"
W=/tmp/round8
mkdir -p "$W"
B=pytorch:fp16+channels_last+fuse_batchnorm
FAST="$B+compile+max_autotune+pipeline_graph"
case "$part" in
latency)
  timeout 150 python3 -m pytest -q -p no:cacheprovider -m cuda tests/benchmark tests/preprocess tests/evaluate \
      tests/test_detector.py > "$OUT/cuda_tests.txt" 2>&1; tail -3 "$OUT/cuda_tests.txt"
  timeout 380 "${CLI[@]}" benchmark -c j6gen2_base --device cuda --warmup 20 -n 50 \
      -v pytorch:fp32 -v "$FAST" -v "$B+fuse_relu+pipeline_graph" --no-scaling --no-plots -o "$W/side" > "$W/bench.log" 2>&1
  cp "$W/side/benchmark.md" "$OUT/j6gen2_side_by_side.md"; cp "$W/side/benchmark.json" "$OUT/j6gen2_side_by_side.json"
  tail -12 "$W/bench.log"
  ;;
amp)
  timeout 300 "${CLI[@]}" benchmark -c j6gen2_base_amp --device cuda --warmup 20 -n 50 \
      -v pytorch:fp32 -v "$FAST" --no-scaling --no-plots -o "$W/amp" > "$W/amp.log" 2>&1
  cp "$W/amp/benchmark.md" "$OUT/j6gen2_amp_side_by_side.md"; cp "$W/amp/benchmark.json" "$OUT/j6gen2_amp_side_by_side.json"
  tail -8 "$W/amp.log"
  timeout 240 python3 benchmarks/batch_throughput.py --config j6gen2_base --variant "$B+fuse_relu+pipeline_graph" \
      --batch 1 8 --out "$OUT/batch.json" > "$OUT/batch.md" 2>&1; tail -6 "$OUT/batch.md"
  ;;
esac
