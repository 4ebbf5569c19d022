#!/usr/bin/env bash
# Round 17 on one H200 (PyTorch only), in parts that each fit a 10-minute device call:
#   bash benchmarks/h200_round17.sh timeline OUT  where the 10-sweep loop's device time goes (loop_timeline.py, 80
#                                                 frames, compiled GC): host -> device copies from each kind of host
#                                                 memory, the merge of one frame, the steady loop's frames/s with
#                                                 the merge graphs and with the operator-by-operator merge, and the
#                                                 loop's per-stream device timeline (its Chrome trace gzipped)
# Writes flat files into OUT.
source "$(dirname "$0")/h200_common.sh" "$@"
case "$part" in
timeline)
  timeout 540 python3 benchmarks/loop_timeline.py --sweeps 10 --frames 80 --data "$W/d10" --variant "$GC" \
      --timeline --operator-merge --trace "$W/trace10.json" > "$OUT/loop_timeline_10sweeps.txt" 2>&1
  grep -v 'Warning\|warn\|━' "$OUT/loop_timeline_10sweeps.txt" | cut -c1-330 | tail -45
  gzip -c "$W/trace10.json" > "$OUT/trace10.json.gz" 2>/dev/null
  ;;
*) echo "unknown part $part"; exit 2 ;;
esac
