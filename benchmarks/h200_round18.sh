#!/usr/bin/env bash
# Round 18 on one H200 (PyTorch only), in parts that each fit a 10-minute device call:
#   bash benchmarks/h200_round18.sh loop OUT     the CUDA tests of the loader and the ONNX Runtime backend; the
#                                                steady 1-sweep loop (200 frames, both views, compiled GC) with its
#                                                frames merged on the device (as in round 17) and in the readers,
#                                                in one process; the main thread's steps of both; then the
#                                                evaluate CLI's start-up: three runs, one under -X importtime and
#                                                one under cProfile (its 45 costliest calls by cumulative time)
#   bash benchmarks/h200_round18.sh ab OUT       the steady 1-sweep loop's A/B again with room for the cold compile
#                                                (call 1's ran out of its 200 s); then three evaluate runs under
#                                                benchmarks/startup_phases.py (where the start-up goes)
#   bash benchmarks/h200_round18.sh final OUT    with one-sweep frames merged in the readers and the dataset opened
#                                                in child processes during the import of torch: the CUDA tests of
#                                                the loader, the dataset opening and the ONNX Runtime backend; three
#                                                evaluate runs under startup_phases.py; the steady loop with the
#                                                defaults, 1 sweep (200 frames) and 10 sweeps (80 frames)
#   bash benchmarks/h200_round18.sh readers OUT  the steady 1-sweep loop (200 frames, defaults otherwise) with 4, 8, 4,
#                                                8 and 6 readers in one process (are the readers behind: call 3's
#                                                loop waited 0.08 s of its 0.36 s for frames); three more evaluate
#                                                runs under startup_phases.py
# Writes flat files into OUT.
source "$(dirname "$0")/h200_common.sh" "$@"
case "$part" in
loop)
  timeout 90 python3 -m pytest -q -p no:cacheprovider -m cuda tests/data/test_loader.py \
      tests/backends/test_onnxruntime_backend.py > "$OUT/cuda_tests.txt" 2>&1; tail -1 "$OUT/cuda_tests.txt"
  timeout 200 python3 benchmarks/evaluate_throughput.py --device cuda --frames 200 --sweeps 1 --variant "$GC" \
      --device-merge-files 2 --device-merge-files 3 --out "$W/e1" > "$W/loop1.log" 2>&1
  grep -v Warning "$W/loop1.log" | grep '^|\|^{' > "$OUT/evaluate_throughput_1sweep_merge_ab.md"
  grep '^|' "$OUT/evaluate_throughput_1sweep_merge_ab.md" | cut -c1-20,90-
  timeout 150 python3 benchmarks/profile_loop.py --frames 200 --sweeps 1 --variant "$GC" --data "$W/e1/data/synth-1sweeps" \
      --device-merge-files 2 --device-merge-files 3 > "$OUT/profile_loop_1sweep_merge_ab.txt" 2>&1
  grep '^frames reading\|^| ' "$OUT/profile_loop_1sweep_merge_ab.txt" | grep -v '^| *[a-z_:]*  ' | head -44
  run=("${CLI[@]}" evaluate --dataset "$W/e1/data/synth-1sweeps" --config demo --device cuda --no-plots --no-cache
       --max-frames 4)
  for i in 1 2 3; do
    timeout 30 "${run[@]}" --out "$W/s$i" > /dev/null 2>&1
    python3 -c "import json; print('startup_s', json.load(open('$W/s$i/comparison.json'))['throughput']['startup_s'])"
  done | tee "$OUT/startup_runs.txt"
  timeout 30 python3 -X importtime "${run[@]:1}" --out "$W/s4" 2> "$OUT/startup_importtime.txt" > /dev/null
  timeout 40 python3 -m cProfile -o "$W/startup.prof" "${run[@]:1}" --out "$W/s5" > /dev/null 2>&1
  python3 -c "import pstats; pstats.Stats('$W/startup.prof').sort_stats('cumulative').print_stats(45)" \
      > "$OUT/startup_cprofile.txt" 2>&1
  sort -t'|' -k2 -n "$OUT/startup_importtime.txt" | tail -12 | cut -c1-120
  ;;
ab)
  timeout 330 python3 benchmarks/evaluate_throughput.py --device cuda --frames 200 --sweeps 1 --variant "$GC" \
      --device-merge-files 2 --device-merge-files 3 --out "$W/e1" > "$W/loop1.log" 2>&1
  grep -v Warning "$W/loop1.log" | grep '^|\|^{' > "$OUT/evaluate_throughput_1sweep_merge_ab.md"
  grep '^|' "$OUT/evaluate_throughput_1sweep_merge_ab.md" | cut -c1-20,90-
  for i in 1 2 3; do
    timeout 40 python3 benchmarks/startup_phases.py --dataset "$W/e1/data/synth-1sweeps" --config demo --device cuda \
        --no-plots --no-cache --max-frames 4 --out "$W/p$i" 2>/dev/null | grep '^|' > "$OUT/startup_phases_$i.md"
  done
  cat "$OUT/startup_phases_3.md"
  ;;
final)
  timeout 60 python3 -m pytest -q -p no:cacheprovider tests/data/test_loader.py tests/data/test_opening.py \
      tests/backends/test_onnxruntime_backend.py > "$OUT/tests.txt" 2>&1; tail -1 "$OUT/tests.txt"
  startup_and_default_loops 200
  ;;
readers)
  timeout 300 python3 benchmarks/evaluate_throughput.py --device cuda --frames 200 --sweeps 1 --variant "$GC" \
      --workers 4 --workers 8 --workers 4 --workers 8 --workers 6 --out "$W/e1" > "$W/loop1.log" 2>&1
  grep -v Warning "$W/loop1.log" | grep '^|\|^{' > "$OUT/evaluate_throughput_1sweep_readers.md"
  grep '^|' "$OUT/evaluate_throughput_1sweep_readers.md" | cut -c1-12,90-
  for i in 4 5 6; do
    timeout 25 python3 benchmarks/startup_phases.py --dataset "$W/e1/data/synth-1sweeps" --config demo --device cuda \
        --no-plots --no-cache --max-frames 4 --out "$W/p$i" 2>/dev/null | grep '^|' > "$OUT/startup_phases_$i.md"
    grep 'torch imported\|handed over\|first frame' "$OUT/startup_phases_$i.md"
  done
  ;;
*) echo "unknown part $part"; exit 2 ;;
esac
