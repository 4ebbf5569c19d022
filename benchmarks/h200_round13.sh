#!/usr/bin/env bash
# Round 13 on one H200 (PyTorch only), in parts that each fit a 10-minute device call:
#   bash benchmarks/h200_round13.sh probe OUT   readers alone with 10 sweeps (4 and 8 of them, one BLAS thread
#                                               each now); evaluate against the pipeline with 10 sweeps
#                                               (4 and 8 readers) and 1 sweep; the node's selection part by
#                                               part, eager and compiled
#   bash benchmarks/h200_round13.sh loop OUT    with the sweeps merged on the device: a reader alone and the loader
#                                               (10 sweeps); evaluate against the pipeline with 10 sweeps (4 and 8
#                                               readers; its first pass timed after two batches)
#   bash benchmarks/h200_round13.sh steady OUT  the loop's steady state (a first pass captures every graph size): the
#                                               loop's steps with 10 sweeps; evaluate with 10 sweeps (8 readers)
#                                               and 1 sweep (uncompiled and compiled)
#   bash benchmarks/h200_round13.sh final OUT   the CUDA tests of this round's code; the steady loop again with 10
#                                               sweeps, and compiled with 1 sweep
#   bash benchmarks/h200_round13.sh compiled OUT the CUDA tests of compiled code recorded in graphs; the steady loop
#                                               compiled (the node's selection too), 1 and 10 sweeps
#   bash benchmarks/h200_round13.sh latency OUT CUDA tests of the touched suites; j6gen2_base side by side with eager
#                                               fp32 (compiled: decode and the result's packing compiled too)
# Writes flat files into OUT.
source "$(dirname "$0")/h200_common.sh" "$@"
W=/tmp/round13
mkdir -p "$W"
B=pytorch:fp16+channels_last+fuse_batchnorm
G="$B+fuse_relu+pipeline_graph"                                   # round 11's loop variant
GC="$B+fuse_relu+compile+pipeline_graph"                          # the same, compiled
FN="$B+fuse_heads+fuse_neck+compile+max_autotune+pipeline_graph"  # compiled, both fusions
case "$part" in
probe)
  timeout 60 python3 benchmarks/read_frames.py --frames 24 --sweeps 10 --loader --workers 4 8 \
      > "$OUT/read_frames_10sweeps.md" 2>&1; tail -6 "$OUT/read_frames_10sweeps.md"
  for w in 4 8; do
    timeout 120 python3 benchmarks/evaluate_throughput.py --device cuda --frames 60 --sweeps 10 --variant "$G" \
        --batch-size 1 --workers $w --out "$W/e10" > "$W/e10w$w.log" 2>&1
    grep -v Warning "$W/e10w$w.log" | grep '^|' > "$OUT/evaluate_throughput_60_10sweeps_workers$w.md"
    tail -1 "$OUT/evaluate_throughput_60_10sweeps_workers$w.md"
  done
  timeout 100 python3 benchmarks/evaluate_throughput.py --device cuda --frames 160 --sweeps 1 --variant "$G" \
      --batch-size 1 --out "$W/e1" > "$W/e1.log" 2>&1
  grep -v Warning "$W/e1.log" | grep '^|' > "$OUT/evaluate_throughput_160.md"; tail -1 "$OUT/evaluate_throughput_160.md"
  timeout 60 python3 benchmarks/node_select_parts.py --capacity 512 > "$OUT/node_select_parts.md" 2>&1
  timeout 110 python3 benchmarks/node_select_parts.py --capacity 512 --compile > "$OUT/node_select_parts_compiled.md" 2>&1
  grep '^|' "$OUT/node_select_parts.md" "$OUT/node_select_parts_compiled.md"
  ;;
loop)
  timeout 70 python3 benchmarks/read_frames.py --frames 12 --sweeps 10 > "$OUT/read_frames_reader_10sweeps.md" 2>&1
  tail -3 "$OUT/read_frames_reader_10sweeps.md"
  timeout 70 python3 benchmarks/read_frames.py --frames 24 --sweeps 10 --loader --device cuda --workers 4 8 \
      > "$OUT/read_frames_loader_10sweeps_cuda.md" 2>&1; tail -2 "$OUT/read_frames_loader_10sweeps_cuda.md"
  for w in 4 8; do
    timeout 90 python3 benchmarks/evaluate_throughput.py --device cuda --frames 60 --sweeps 10 --variant "$G" \
        --batch-size 1 --workers $w --out "$W/e10" > "$W/e10w$w.log" 2>&1
    grep -v Warning "$W/e10w$w.log" | grep '^|' > "$OUT/evaluate_throughput_60_10sweeps_workers$w.md"
    tail -1 "$OUT/evaluate_throughput_60_10sweeps_workers$w.md"
  done
  ;;
steady)  # the loop's steady state (a first pass captured every graph size): 10 sweeps, then 1 sweep, uncompiled and compiled
  timeout 90 python3 benchmarks/profile_loop.py --device cuda --frames 60 --sweeps 10 --variant "$G" \
      > "$OUT/profile_loop_steps_10sweeps.txt" 2>&1; grep "^|" "$OUT/profile_loop_steps_10sweeps.txt" | head -18
  timeout 100 python3 benchmarks/evaluate_throughput.py --device cuda --frames 60 --sweeps 10 --variant "$G" \
      --batch-size 1 --workers 8 --out "$W/e10" > "$W/s10.log" 2>&1
  grep -v Warning "$W/s10.log" | grep '^|\|^{' > "$OUT/evaluate_throughput_60_10sweeps_steady.md"; tail -1 "$OUT/evaluate_throughput_60_10sweeps_steady.md"
  for v in "$G" "$GC"; do
    timeout 150 python3 benchmarks/evaluate_throughput.py --device cuda --frames 120 --sweeps 1 --variant "$v" \
        --batch-size 1 --out "$W/e1" > "$W/s1.log" 2>&1
    grep -v Warning "$W/s1.log" | grep '^|\|^{' >> "$OUT/evaluate_throughput_120_steady.md"; tail -1 "$W/s1.log"
  done
  ;;
final)  # the CUDA tests of the new code; the steady loop with 10 sweeps (the merge's table pinned) and compiled with 1 sweep
  timeout 200 python3 -m pytest -q -p no:cacheprovider -m cuda tests/data tests/benchmark/test_pipeline_graph.py \
      -k "loader or frame_slots or views or compiled" > "$OUT/cuda_tests.txt" 2>&1; tail -3 "$OUT/cuda_tests.txt"
  timeout 100 python3 benchmarks/evaluate_throughput.py --device cuda --frames 60 --sweeps 10 --variant "$G" \
      --batch-size 1 --workers 8 --out "$W/e10" > "$W/s10.log" 2>&1
  grep -v Warning "$W/s10.log" | grep '^|\|^{' > "$OUT/evaluate_throughput_60_10sweeps_steady_pinned.md"; tail -1 "$W/s10.log"
  timeout 260 python3 benchmarks/evaluate_throughput.py --device cuda --frames 80 --sweeps 1 --variant "$GC" \
      --batch-size 1 --out "$W/e1" > "$W/c1.log" 2>&1
  grep -v Warning "$W/c1.log" | grep '^|\|^{' > "$OUT/evaluate_throughput_80_compiled_steady.md"; tail -1 "$W/c1.log"
  ;;
compiled)  # after the fix for compiled code recorded in a graph: its CUDA tests; the steady loop compiled, 1 and 10 sweeps
  timeout 120 python3 -m pytest -q -p no:cacheprovider -m cuda tests/data tests/benchmark/test_pipeline_graph.py \
      -k "loader or frame_slots or views or compiled" > "$OUT/cuda_tests_compiled.txt" 2>&1; tail -3 "$OUT/cuda_tests_compiled.txt"
  timeout 200 python3 benchmarks/evaluate_throughput.py --device cuda --frames 80 --sweeps 1 --variant "$GC" \
      --batch-size 1 --out "$W/e1" > "$W/c1.log" 2>&1
  grep -v Warning "$W/c1.log" | grep '^|\|^{' > "$OUT/evaluate_throughput_80_compiled_steady.md"; tail -1 "$W/c1.log"
  timeout 150 python3 benchmarks/evaluate_throughput.py --device cuda --frames 60 --sweeps 10 --variant "$GC" \
      --batch-size 1 --workers 8 --out "$W/e10" > "$W/c10.log" 2>&1
  grep -v Warning "$W/c10.log" | grep '^|\|^{' > "$OUT/evaluate_throughput_60_10sweeps_compiled_steady.md"; tail -1 "$W/c10.log"
  ;;
latency)
  timeout 230 python3 -m pytest -q -p no:cacheprovider -m cuda tests/benchmark/test_pipeline_graph.py tests/data \
      tests/evaluate tests/postprocess > "$OUT/cuda_tests.txt" 2>&1; tail -4 "$OUT/cuda_tests.txt"
  timeout 330 "${CLI[@]}" benchmark -c j6gen2_base --device cuda --warmup 20 -n 50 -v pytorch:fp32 -v "$FN" \
      --no-scaling --no-plots -o "$W/j6" > "$W/j6.log" 2>&1
  cp "$W/j6/benchmark.md" "$OUT/j6gen2_side_by_side.md"; tail -8 "$W/j6.log"
  ;;
esac
