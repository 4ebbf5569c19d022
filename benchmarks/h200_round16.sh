#!/usr/bin/env bash
# Round 16 on one H200 (PyTorch only), in parts that each fit a 10-minute device call:
#   bash benchmarks/h200_round16.sh profile OUT  the steady 1-sweep evaluate loop (200 frames, compiled GC): its
#                                                frames/s against the pipeline's, then where its main thread
#                                                spends each frame (profile_loop.py: steps, operators, the host
#                                                cost of each graph's launch)
#   bash benchmarks/h200_round16.sh host OUT     the same after the host-side changes (the side stream at high
#                                                priority, the head outputs' copy one graph, host boxes to
#                                                SampleBoxes without packing, a kept page-locked merge table),
#                                                after the CUDA tests of the pipeline graph and the loader
#   bash benchmarks/h200_round16.sh views OUT    the steady 1-sweep loop with both views (what evaluate runs) and
#                                                with mmdet3d's alone (the pipeline figure's work), 200 frames;
#                                                its profile with each graph's kernels and GPU time; FNR's boxes
#                                                against plain fp32 with moved peaks told apart (demo model, 10
#                                                frames); the steady 10-sweep loop (80 frames)
#   bash benchmarks/h200_round16.sh workers OUT  the steady 10-sweep loop (80 frames) with 8 and 12 reader processes
#                                                (4, the default, in part views)
#   bash benchmarks/h200_round16.sh release OUT  the loader's CUDA tests; the steady 10-sweep loop (80 frames) and
#                                                its step profile (call 5 ran it with a loader change that released
#                                                slots without waiting for their upload, taken out since: no gain)
# Writes flat files into OUT.
source "$(dirname "$0")/h200_common.sh" "$@"
case "$part" in
profile)
  loop 300 200 1 "$GC" evaluate_throughput_200_compiled_steady.md
  timeout 200 python3 benchmarks/profile_loop.py --device cuda --variant "$GC" --data "$W/e1/data/synth-1sweeps" \
      > "$OUT/profile_loop_steps_1sweep_compiled.txt" 2>&1
  grep '^|' "$OUT/profile_loop_steps_1sweep_compiled.txt" | grep -v -- '---' | cut -c1-130 | head -60
  ;;
host)
  timeout 150 python3 -m pytest -q -p no:cacheprovider -m cuda tests/benchmark/test_pipeline_graph.py tests/data \
      > "$OUT/cuda_tests.txt" 2>&1; tail -3 "$OUT/cuda_tests.txt"
  loop 300 200 1 "$GC" evaluate_throughput_200_compiled_steady_host.md
  timeout 200 python3 benchmarks/profile_loop.py --device cuda --variant "$GC" --data "$W/e1/data/synth-1sweeps" \
      > "$OUT/profile_loop_steps_1sweep_compiled_host.txt" 2>&1
  grep '^|' "$OUT/profile_loop_steps_1sweep_compiled_host.txt" | grep -v -- '---' | cut -c1-130 | head -40
  ;;
views)
  timeout 220 python3 benchmarks/evaluate_throughput.py --device cuda --frames 200 --sweeps 1 --variant "$GC" \
      --views both --views mmdet3d --out "$W/e1" > "$W/loop.log" 2>&1
  grep -v Warning "$W/loop.log" | grep '^|\|^{' > "$OUT/evaluate_throughput_200_views.md"; tail -4 "$W/loop.log"
  timeout 120 python3 benchmarks/profile_loop.py --device cuda --variant "$GC" --data "$W/e1/data/synth-1sweeps" \
      > "$OUT/profile_loop_steps_1sweep_compiled_views.txt" 2>&1
  grep '^| pipe\|^| side\|^| the whole\|^| launch\|^| collect\|^| next' "$OUT/profile_loop_steps_1sweep_compiled_views.txt" \
      | cut -c1-250 | head -12
  timeout 140 python3 benchmarks/verify_fast_path.py --variant "$FNR" --checkpoint centerpoint_deploy/assets/demo_centerpoint.pth \
      --frames 10 > "$OUT/verify_fast_path_moved_peaks.txt" 2>&1
  grep -v 'AUTOTUNE\|triton_\|strides\|dtypes\|Autotune\|num_choices\|Warning\|storage' \
      "$OUT/verify_fast_path_moved_peaks.txt" | tail -5 | cut -c1-400
  timeout 120 python3 benchmarks/evaluate_throughput.py --device cuda --frames 80 --sweeps 10 --variant "$GC" \
      --out "$W/e10" > "$W/loop10.log" 2>&1
  grep -v Warning "$W/loop10.log" | grep '^|\|^{' > "$OUT/evaluate_throughput_80_10sweeps.md"; tail -2 "$W/loop10.log"
  ;;
workers)
  for n in 8 12; do
    timeout $((n == 8 ? 200 : 110)) python3 benchmarks/evaluate_throughput.py --device cuda --frames 80 --sweeps 10 \
        --variant "$GC" --workers $n --out "$W/e10" > "$W/loop10.log" 2>&1
    grep -v Warning "$W/loop10.log" | grep '^{' >> "$OUT/evaluate_throughput_80_10sweeps_workers.md"; tail -1 "$W/loop10.log"
  done
  ;;
release)
  timeout 60 python3 -m pytest -q -p no:cacheprovider -m cuda tests/data/test_loader.py > "$OUT/cuda_tests_loader.txt" 2>&1
  tail -1 "$OUT/cuda_tests_loader.txt"
  timeout 150 python3 benchmarks/evaluate_throughput.py --device cuda --frames 80 --sweeps 10 --variant "$GC" \
      --out "$W/e10" > "$W/loop10.log" 2>&1
  grep -v Warning "$W/loop10.log" | grep '^{' > "$OUT/evaluate_throughput_80_10sweeps_release.md"; tail -1 "$W/loop10.log"
  timeout 75 python3 benchmarks/profile_loop.py --device cuda --variant "$GC" --sweeps 10 \
      --data "$W/e10/data/synth-10sweeps" > "$OUT/profile_loop_steps_10sweeps_release.txt" 2>&1
  grep '^|' "$OUT/profile_loop_steps_10sweeps_release.txt" | grep -v -- '---' | cut -c1-200 | head -22
  ;;
*) echo "unknown part $part"; exit 2 ;;
esac
