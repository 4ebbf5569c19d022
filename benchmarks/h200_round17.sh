#!/usr/bin/env bash
# Round 17 on one H200 (PyTorch only), in parts that each fit a 10-minute device call:
#   bash benchmarks/h200_round17.sh timeline OUT  where the 10-sweep loop's device time goes (loop_timeline.py, 80
#                                                 frames, compiled GC): host -> device copies from each kind of host
#                                                 memory, the merge of one frame, the steady loop's frames/s with
#                                                 the merge graphs and with the operator-by-operator merge, and the
#                                                 loop's per-stream device timeline (its Chrome trace gzipped)
#   bash benchmarks/h200_round17.sh merge OUT     after the merge's narrow gathers and the float32 finite check: the
#                                                 CUDA tests of the device merge and the loader; the 10-sweep
#                                                 timeline again (4 readers, no operator-merge run); the steady
#                                                 10-sweep loop with 8 readers; the steady 1-sweep loop (200 frames,
#                                                 both views) with 4 and 8 readers
#   bash benchmarks/h200_round17.sh final OUT     with the default readers (now 8 for 10 sweeps): the copy, upload and
#                                                 merge tables; the steady 10-sweep loop (80 frames); j6gen2_base side
#                                                 by side with eager fp32 (FNR); the steady 1-sweep loop (200 frames,
#                                                 both views)
#   bash benchmarks/h200_round17.sh last OUT      the steady 1-sweep loop (200 frames, both views) once more on another
#                                                 machine; the copy tables with the slots' page-locking time (12
#                                                 frames); j6gen2_base batches of 1 and 8 (GC) against single runs
# Writes flat files into OUT.
source "$(dirname "$0")/h200_common.sh" "$@"
case "$part" in
timeline)
  timeout 540 python3 benchmarks/loop_timeline.py --sweeps 10 --frames 80 --data "$W/d10" --variant "$GC" \
      --timeline --operator-merge --trace "$W/trace10.json" > "$OUT/loop_timeline_10sweeps.txt" 2>&1
  grep -v 'Warning\|warn\|━' "$OUT/loop_timeline_10sweeps.txt" | cut -c1-330 | tail -45
  gzip -c "$W/trace10.json" > "$OUT/trace10.json.gz" 2>/dev/null
  ;;
merge)
  timeout 120 python3 -m pytest -q -p no:cacheprovider -m cuda tests/data/test_sweeps.py tests/data/test_loader.py \
      > "$OUT/cuda_tests_merge.txt" 2>&1; tail -1 "$OUT/cuda_tests_merge.txt"
  timeout 300 python3 benchmarks/loop_timeline.py --sweeps 10 --frames 80 --data "$W/e10/data/synth-10sweeps" \
      --variant "$GC" --timeline > "$OUT/loop_timeline_10sweeps_merge.txt" 2>&1
  grep -v 'Warning\|warn\|━' "$OUT/loop_timeline_10sweeps_merge.txt" | cut -c1-250 | grep -v '^| 5[0-9] \|^| 4[0-9] ' | tail -24
  timeout 150 python3 benchmarks/evaluate_throughput.py --device cuda --frames 80 --sweeps 10 --variant "$GC" \
      --workers 8 --out "$W/e10" > "$W/loop10.log" 2>&1
  grep -v Warning "$W/loop10.log" | grep '^{' > "$OUT/evaluate_throughput_80_10sweeps_8readers.md"; tail -1 "$W/loop10.log"
  for n in 4 8; do
    timeout 150 python3 benchmarks/evaluate_throughput.py --device cuda --frames 200 --sweeps 1 --variant "$GC" \
        --workers $n --out "$W/e1" > "$W/loop1.log" 2>&1
    grep -v Warning "$W/loop1.log" | grep '^{' >> "$OUT/evaluate_throughput_200_1sweep_readers.md"; tail -1 "$W/loop1.log"
  done
  ;;
final)
  timeout 150 python3 benchmarks/loop_timeline.py --sweeps 10 --frames 80 --data "$W/e10/data/synth-10sweeps" \
      > "$OUT/loop_timeline_tables.txt" 2>&1
  grep -v 'Warning\|warn' "$OUT/loop_timeline_tables.txt" | grep 'upload\|is_pinned\|staging\|merge graph\|device:'
  timeout 170 python3 benchmarks/evaluate_throughput.py --device cuda --frames 80 --sweeps 10 --variant "$GC" \
      --out "$W/e10" > "$W/loop10.log" 2>&1
  grep -v Warning "$W/loop10.log" | grep '^|\|^{' > "$OUT/evaluate_throughput_80_10sweeps_default.md"; tail -1 "$W/loop10.log"
  side_by_side j6gen2_base j6gen2_side_by_side.md "$FNR"
  timeout 170 python3 benchmarks/evaluate_throughput.py --device cuda --frames 200 --sweeps 1 --variant "$GC" \
      --out "$W/e1" > "$W/loop1.log" 2>&1
  grep -v Warning "$W/loop1.log" | grep '^|\|^{' > "$OUT/evaluate_throughput_200_1sweep_default.md"; tail -1 "$W/loop1.log"
  ;;
last)
  timeout 170 python3 benchmarks/evaluate_throughput.py --device cuda --frames 200 --sweeps 1 --variant "$GC" \
      --out "$W/e1" > "$W/loop1.log" 2>&1
  grep -v Warning "$W/loop1.log" | grep '^|\|^{' > "$OUT/evaluate_throughput_200_1sweep_last.md"; tail -1 "$W/loop1.log"
  timeout 60 python3 benchmarks/loop_timeline.py --sweeps 10 --frames 12 --data "$W/d12" \
      > "$OUT/loop_timeline_tables_last.txt" 2>&1
  grep 'page-locking' "$OUT/loop_timeline_tables_last.txt" | cut -c1-250
  timeout 200 python3 benchmarks/batch_throughput.py --config j6gen2_base --device cuda --variant "$GC" --batch 1 8 \
      --out "$OUT/batch_j6gen2_compiled.json" > "$OUT/batch_j6gen2_compiled.md" 2>&1
  grep '^|' "$OUT/batch_j6gen2_compiled.md" | cut -c1-250
  ;;
*) echo "unknown part $part"; exit 2 ;;
esac
