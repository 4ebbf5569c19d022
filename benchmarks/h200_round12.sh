#!/usr/bin/env bash
# Round 12 on one H200 (PyTorch only), in parts that each fit a 10-minute device call:
#   bash benchmarks/h200_round12.sh loop OUT     CUDA tests of the touched suites; evaluate against the pipeline,
#                                                1 sweep (160 frames, B = 1 and 8) and 10 sweeps (40 frames)
#   bash benchmarks/h200_round12.sh diag OUT     the loop's steps on the main thread (B = 1); 4 readers instead of 8
#   bash benchmarks/h200_round12.sh latency OUT  j6gen2_base and j6gen2_base_amp side by side with eager fp32
#                                                (the uncompiled and the compiled fp16 graph); the compiled
#                                                flags' box agreement with fp32 on the GPU
# What changed since round 11: reader processes kept for every pass (started before the detectors load);
# 8 readers by default in the loop part's run (4 since: 8 were slower at batch 1); point buffers in quarter octaves and max_points 2^21 (10 sweeps captured);
# a graph's encoder on pillar_capacity rows (12,288 for ~8,000 pillars) instead of max_voxels (64,000).
# Writes flat files into OUT.
source "$(dirname "$0")/h200_common.sh" "$@"
W=/tmp/round12
mkdir -p "$W"
B=pytorch:fp16+channels_last+fuse_batchnorm
G="$B+fuse_relu+pipeline_graph"                                   # round 11's loop variant
GN="$B+fuse_relu+fuse_heads+fuse_neck+pipeline_graph"             # uncompiled, both fusions
FN="$B+fuse_heads+fuse_neck+compile+max_autotune+pipeline_graph"  # compiled, both fusions
case "$part" in
loop)
  timeout 200 python3 -m pytest -q -p no:cacheprovider -m cuda tests/benchmark/test_pipeline_graph.py tests/evaluate \
      tests/postprocess tests/preprocess tests/data tests/model > "$OUT/cuda_tests.txt" 2>&1; tail -4 "$OUT/cuda_tests.txt"
  timeout 200 python3 benchmarks/evaluate_throughput.py --device cuda --frames 160 --sweeps 1 --variant "$G" \
      --batch-size 1 --batch-size 8 --out "$W/e1" > "$W/e1.log" 2>&1
  grep -v Warning "$W/e1.log" | grep '^{\|^|' > "$OUT/evaluate_throughput_160.md"; cat "$OUT/evaluate_throughput_160.md"
  timeout 150 python3 benchmarks/evaluate_throughput.py --device cuda --frames 40 --sweeps 10 --variant "$G" \
      --batch-size 1 --out "$W/e10" > "$W/e10.log" 2>&1
  grep -v Warning "$W/e10.log" | grep '^{\|^|' > "$OUT/evaluate_throughput_40_10sweeps.md"; cat "$OUT/evaluate_throughput_40_10sweeps.md"
  ;;
diag)
  timeout 120 python3 benchmarks/profile_loop.py --device cuda --frames 80 --variant "$G" \
      > "$OUT/profile_loop_steps.txt" 2>&1; grep "^|" "$OUT/profile_loop_steps.txt" | head -18
  timeout 120 python3 benchmarks/evaluate_throughput.py --device cuda --frames 160 --sweeps 1 --variant "$G" \
      --batch-size 1 --workers 4 --out "$W/e1" > "$W/e1w4.log" 2>&1
  grep -v Warning "$W/e1w4.log" | grep '^{\|^|' > "$OUT/evaluate_throughput_160_workers4.md"; cat "$OUT/evaluate_throughput_160_workers4.md"
  ;;
latency)
  timeout 330 "${CLI[@]}" benchmark -c j6gen2_base --device cuda --warmup 20 -n 50 -v pytorch:fp32 -v "$GN" -v "$FN" \
      --no-scaling --no-plots -o "$W/j6" > "$W/j6.log" 2>&1
  cp "$W/j6/benchmark.md" "$OUT/j6gen2_side_by_side.md"; tail -12 "$W/j6.log"
  timeout 150 python3 benchmarks/verify_fast_path.py --variant "$FN" --config demo --device cuda --frames 10 \
      --checkpoint centerpoint_deploy/assets/demo_centerpoint.pth > "$OUT/verify_fast_path.md" 2>&1
  tail -4 "$OUT/verify_fast_path.md"
  ;;
amp)
  timeout 300 "${CLI[@]}" benchmark -c j6gen2_base_amp --device cuda --warmup 20 -n 50 -v pytorch:fp32 -v "$FN" \
      --no-scaling --no-plots -o "$W/amp" > "$W/amp.log" 2>&1
  cp "$W/amp/benchmark.md" "$OUT/j6gen2_amp_side_by_side.md"; tail -8 "$W/amp.log"
  timeout 250 python3 benchmarks/batch_throughput.py --config j6gen2_base --variant "$FN" \
      --batch 1 8 --out "$OUT/batch_compiled.json" > "$OUT/batch_compiled.md" 2>&1; tail -6 "$OUT/batch_compiled.md"
  ;;
esac
