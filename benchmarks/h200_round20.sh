#!/usr/bin/env bash
# Round 20 on one H200: every target of issue #16 measured again with the code as it stands, in parts that each
# fit a 10-minute call on one warm machine (the compile cache under /tmp/h200_round20 is shared between them):
#   bash benchmarks/h200_round20.sh latency OUT  the machine's dense rate (an 8192^3 fp16 matmul, into machine.txt);
#                                               j6gen2_base and j6gen2_base_amp side by side with eager fp32 (FNR);
#                                               j6gen2_base batches of 1, 2, 4 and 8 (FNR) against single runs
#   bash benchmarks/h200_round20.sh ort OUT     with onnxruntime-gpu on PYTHONPATH: the j6gen2_base bundle (random
#                                               weights) and ONNX Runtime's fp32 and fp16 pipeline variants side by
#                                               side with eager fp32
#   bash benchmarks/h200_round20.sh loop OUT    three evaluate runs under startup_phases.py; the steady loop with the
#                                               defaults, 1 sweep (200 frames) and 10 sweeps (80 frames)
#   bash benchmarks/h200_round20.sh boxes OUT   FNR's boxes against plain fp32 (the demo model, 20 sample frames); the
#                                               compile cache: j6gen2_base's FNR benchmarked twice in fresh processes
#                                               on one cache (the first cold), each run's first call
# Writes flat files into OUT.
source "$(dirname "$0")/h200_common.sh" "$@"
case "$part" in
latency)
  python3 -c "
import torch
a, b = (torch.randn(8192, 8192, device='cuda', dtype=torch.float16) for _ in range(2))
for _ in range(5): a @ b
s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
s.record()
for _ in range(50): a @ b
e.record(); torch.cuda.synchronize()
print('dense rate (8192^3 fp16 matmul):', round(2 * 8192**3 * 50 / (s.elapsed_time(e) / 1e3) / 1e12), 'TFLOP/s')
" | tee -a "$OUT/machine.txt"
  SIDE_SECONDS=170 side_by_side j6gen2_base j6gen2_side_by_side.md "$FNR"
  SIDE_SECONDS=170 side_by_side j6gen2_base_amp j6gen2_amp_side_by_side.md "$FNR"
  timeout 230 python3 benchmarks/batch_throughput.py --config j6gen2_base --device cuda --variant "$FNR" \
      --batch 1 2 4 8 --out "$OUT/batch_j6gen2.json" > "$OUT/batch_j6gen2.md" 2>&1
  grep '^|' "$OUT/batch_j6gen2.md" | cut -c1-250
  ;;
ort)
  python3 -c "import onnxruntime as o; print(o.__version__, o.get_available_providers())" | tee -a "$OUT/machine.txt"
  timeout 90 "${CLI[@]}" export -c j6gen2_base -o "$W/dep_j6" --random-weights --device cuda > "$W/export.log" 2>&1 \
      || tail -5 "$W/export.log"
  timeout 240 "${CLI[@]}" benchmark -c j6gen2_base --device cuda --deploy-dir "$W/dep_j6" --warmup 10 -n 50 \
      -v pytorch:fp32 -v onnxruntime:fp32+cudnn_benchmark+pipeline_graph -v onnxruntime:fp16+channels_last+pipeline_graph \
      --no-scaling --no-plots -o "$W/ort" > "$W/ort.log" 2>&1
  cp "$W/ort/benchmark.md" "$OUT/ort_side_by_side.md"; grep '^|' "$OUT/ort_side_by_side.md" | cut -c1-60,200- | tail -9
  grep -c "No execution plans" "$W/ort.log"
  ;;
loop)
  startup_and_default_loops 170
  ;;
boxes)
  timeout 200 python3 benchmarks/verify_fast_path.py --variant "$FNR" --config demo --device cuda --frames 20 \
      --checkpoint centerpoint_deploy/assets/demo_centerpoint.pth > "$OUT/verify_fast_path.txt" 2>&1
  echo "verify_fast_path rc $?"; grep -v 'Warning\|warn' "$OUT/verify_fast_path.txt" | tail -6
  for run in cold warm; do
    timeout 150 "${CLI[@]}" benchmark -c j6gen2_base --device cuda --warmup 5 -n 20 -v "$FNR" --no-scaling --no-plots \
        -o "$W/cache_$run" > "$W/cache_$run.log" 2>&1
    { echo "### $run compile cache"; grep '^|' "$W/cache_$run/benchmark.md" | head -3; } >> "$OUT/compile_cache.md"
  done
  cut -c1-40,200- "$OUT/compile_cache.md"
  ;;
*) echo "unknown part $part"; exit 2 ;;
esac
