#!/usr/bin/env bash
# Round 13 on one H200 (PyTorch only), in parts that each fit a 10-minute device call:
#   bash benchmarks/h200_round13.sh probe OUT   readers alone with 10 sweeps (4 and 8 of them, one BLAS thread
#                                               each now); evaluate against the pipeline with 10 sweeps
#                                               (4 and 8 readers) and 1 sweep; the node's selection part by
#                                               part, eager and compiled
#   bash benchmarks/h200_round13.sh loop OUT    with the sweeps merged on the device: a reader alone and the loader
#                                               (10 sweeps); evaluate against the pipeline with 10 sweeps (4 and 8
#                                               readers; as run, the pass after two warm-up batches: the script now times a second whole pass)
#   bash benchmarks/h200_round13.sh steady OUT  the loop's steady state (a first pass captures every graph size): the
#                                               loop's steps with 10 sweeps; evaluate with 10 sweeps (8 readers)
#                                               and 1 sweep (uncompiled and compiled)
#   bash benchmarks/h200_round13.sh final OUT   the CUDA tests of this round's code; the steady loop again with 10
#                                               sweeps, and compiled with 1 sweep
#   bash benchmarks/h200_round13.sh compiled OUT the CUDA tests of compiled code recorded in graphs; the steady loop
#                                               compiled (the node's selection too), 1 and 10 sweeps
#   bash benchmarks/h200_round13.sh diag OUT    (not run yet) the 1-sweep compiled loop's main thread: its steps and a
#                                               torch.profiler table of its views' launches and reads
#   bash benchmarks/h200_round13.sh latency OUT (not run yet) CUDA tests of the touched suites; j6gen2_base side by side with eager
#                                               fp32 (compiled: decode and the result's packing compiled too)
# Writes flat files into OUT.
source "$(dirname "$0")/h200_common.sh" "$@"
W=/tmp/round13
mkdir -p "$W"
B=pytorch:fp16+channels_last+fuse_batchnorm
G="$B+fuse_relu+pipeline_graph"                                   # round 11's loop variant
GC="$B+fuse_relu+compile+pipeline_graph"                          # the same, compiled
FN="$B+fuse_heads+fuse_neck+compile+max_autotune+pipeline_graph"  # compiled, both fusions
# loop SECONDS FRAMES SWEEPS VARIANT WORKERS FILE: evaluate_throughput.py at batch 1 (WORKERS "" for the default
# readers), its table rows and JSON lines appended to OUT/FILE
loop() {
  local readers=(); [ -n "$5" ] && readers=(--workers "$5")
  timeout "$1" python3 benchmarks/evaluate_throughput.py --device cuda --frames "$2" --sweeps "$3" --variant "$4" \
      --batch-size 1 "${readers[@]}" --out "$W/e$3" > "$W/loop.log" 2>&1
  grep -v Warning "$W/loop.log" | grep '^|\|^{' >> "$OUT/$6"; tail -1 "$W/loop.log"
}
case "$part" in
probe)
  timeout 60 python3 benchmarks/read_frames.py --frames 24 --sweeps 10 --loader --workers 4 8 \
      > "$OUT/read_frames_10sweeps.md" 2>&1; tail -6 "$OUT/read_frames_10sweeps.md"
  for w in 4 8; do loop 120 60 10 "$G" $w "evaluate_throughput_60_10sweeps_workers$w.md"; done
  loop 100 160 1 "$G" "" evaluate_throughput_160.md
  timeout 60 python3 benchmarks/node_select_parts.py --capacity 512 > "$OUT/node_select_parts.md" 2>&1
  timeout 110 python3 benchmarks/node_select_parts.py --capacity 512 --compile > "$OUT/node_select_parts_compiled.md" 2>&1
  grep '^|' "$OUT/node_select_parts.md" "$OUT/node_select_parts_compiled.md"
  ;;
loop)
  timeout 70 python3 benchmarks/read_frames.py --frames 12 --sweeps 10 > "$OUT/read_frames_reader_10sweeps.md" 2>&1
  tail -3 "$OUT/read_frames_reader_10sweeps.md"
  timeout 70 python3 benchmarks/read_frames.py --frames 24 --sweeps 10 --loader --device cuda --workers 4 8 \
      > "$OUT/read_frames_loader_10sweeps_cuda.md" 2>&1; tail -2 "$OUT/read_frames_loader_10sweeps_cuda.md"
  for w in 4 8; do loop 90 60 10 "$G" $w "evaluate_throughput_60_10sweeps_workers$w.md"; done
  ;;
steady)  # the loop's steady state (a first pass captured every graph size): 10 sweeps, then 1 sweep, uncompiled and compiled
  timeout 90 python3 benchmarks/profile_loop.py --device cuda --frames 60 --sweeps 10 --variant "$G" \
      > "$OUT/profile_loop_steps_10sweeps.txt" 2>&1; grep "^|" "$OUT/profile_loop_steps_10sweeps.txt" | head -18
  loop 100 60 10 "$G" 8 evaluate_throughput_60_10sweeps_steady.md
  for v in "$G" "$GC"; do loop 150 120 1 "$v" "" evaluate_throughput_120_steady.md; done
  ;;
final)  # the CUDA tests of the new code; the steady loop with 10 sweeps (the merge's table pinned) and compiled with 1 sweep
  timeout 200 python3 -m pytest -q -p no:cacheprovider -m cuda tests/data tests/benchmark/test_pipeline_graph.py \
      -k "loader or frame_slots or views or compiled" > "$OUT/cuda_tests.txt" 2>&1; tail -3 "$OUT/cuda_tests.txt"
  loop 100 60 10 "$G" 8 evaluate_throughput_60_10sweeps_steady_pinned.md
  loop 260 80 1 "$GC" "" evaluate_throughput_80_compiled_steady.md
  ;;
compiled)  # after the fix for compiled code recorded in a graph: its CUDA tests; the steady loop compiled, 1 and 10 sweeps
  timeout 120 python3 -m pytest -q -p no:cacheprovider -m cuda tests/data tests/benchmark/test_pipeline_graph.py \
      -k "loader or frame_slots or views or compiled" > "$OUT/cuda_tests_compiled.txt" 2>&1; tail -3 "$OUT/cuda_tests_compiled.txt"
  loop 200 80 1 "$GC" "" evaluate_throughput_80_compiled_steady.md
  loop 150 60 10 "$GC" 8 evaluate_throughput_60_10sweeps_compiled_steady.md
  ;;
diag)  # not run yet: the 1-sweep loop's main thread, compiled (its steps, then the host time of its views' launches and reads)
  timeout 300 python3 benchmarks/profile_loop.py --device cuda --frames 80 --variant "$GC" \
      > "$OUT/profile_loop_steps_compiled.txt" 2>&1; grep "^|" "$OUT/profile_loop_steps_compiled.txt" | head -18
  ;;
latency)
  timeout 230 python3 -m pytest -q -p no:cacheprovider -m cuda tests/benchmark/test_pipeline_graph.py tests/data \
      tests/evaluate tests/postprocess > "$OUT/cuda_tests.txt" 2>&1; tail -4 "$OUT/cuda_tests.txt"
  timeout 330 "${CLI[@]}" benchmark -c j6gen2_base --device cuda --warmup 20 -n 50 -v pytorch:fp32 -v "$FN" \
      --no-scaling --no-plots -o "$W/j6" > "$W/j6.log" 2>&1
  cp "$W/j6/benchmark.md" "$OUT/j6gen2_side_by_side.md"; tail -8 "$W/j6.log"
  ;;
esac
