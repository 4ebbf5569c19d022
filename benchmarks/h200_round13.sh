#!/usr/bin/env bash
# Round 13 on one H200 (PyTorch only), in parts that each fit a 10-minute device call:
#   bash benchmarks/h200_round13.sh probe OUT   readers alone with 10 sweeps (4 and 8 of them, one BLAS thread
#                                               each now); evaluate against the pipeline with 10 sweeps
#                                               (4 and 8 readers) and 1 sweep; the node's selection part by
#                                               part, eager and compiled
# Writes flat files into OUT.
source "$(dirname "$0")/h200_common.sh" "$@"
W=/tmp/round13
mkdir -p "$W"
B=pytorch:fp16+channels_last+fuse_batchnorm
G="$B+fuse_relu+pipeline_graph"                                   # round 11's loop variant
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
esac
