#!/usr/bin/env bash
# Round 6 on one H200, in two parts that each fit a 10-minute device call:
#   bash benchmarks/h200_round6.sh latency OUT   CUDA tests; j6gen2 side by side with eager fp32; batches
#   bash benchmarks/h200_round6.sh loop OUT      evaluate throughput vs pipeline; ONNX Runtime CUDA fp32/fp16/int8
# Expects onnxruntime-gpu importable (PYTHONPATH) for the ONNX Runtime rows and onnxconverter-common for fp16
# exports. Writes flat files into OUT (machine.txt plus at most 6 more).
source "$(dirname "$0")/h200_common.sh" "$@"
W=/tmp/round6
mkdir -p "$W"
B=pytorch:fp16+channels_last+fuse_batchnorm
case "$part" in
latency)
  timeout 150 python3 -m pytest -q -p no:cacheprovider -m "cuda or tensorrt" tests > "$OUT/cuda_tests.txt" 2>&1
  "${CLI[@]}" export -c j6gen2_base -o "$W/dep_j6" --random-weights --device cuda > "$W/export.log" 2>&1 || tail -5 "$W/export.log"
  timeout 280 "${CLI[@]}" benchmark -c j6gen2_base --device cuda --deploy-dir "$W/dep_j6" --warmup 20 -n 50 \
      -v pytorch:fp32 -v "$B+compile+max_autotune+pipeline_graph" -v pytorch:fp32+fuse_batchnorm+fuse_relu+pipeline_graph \
      -v onnxruntime:fp32 -v onnxruntime:fp16 --no-scaling --no-plots -o "$W/side" > "$W/bench.log" 2>&1
  cp "$W/side/benchmark.md" "$OUT/j6gen2_side_by_side.md"; cp "$W/side/benchmark.json" "$OUT/j6gen2_side_by_side.json"
  tail -15 "$W/bench.log"
  timeout 100 python3 benchmarks/batch_throughput.py --config j6gen2_base --variant "$B+fuse_relu+pipeline_graph" \
      --out "$OUT/batch.json" > "$OUT/batch.md" 2>&1
  ;;
loop)
  timeout 300 python3 benchmarks/evaluate_throughput.py --device cuda --frames 40 --out "$W/throughput" \
      --variant pytorch:fp32 --variant "$B+fuse_relu+pipeline_graph" > "$OUT/evaluate_throughput.md" 2>&1
  cp "$W"/throughput/*.json "$OUT/" 2>/dev/null
  "${CLI[@]}" synth "$W/calib" --scenes 1 --frames 16 --seed 11 > /dev/null 2>&1
  for p in fp32 fp16 int8; do
    extra=(); [ "$p" != fp32 ] && extra=(--precision "$p" --dataset "$W/calib" --calib-frames 16 --calib-method max)
    timeout 120 "${CLI[@]}" export -c demo -o "$W/dep_demo_$p" --device cuda "${extra[@]}" > "$W/export_$p.log" 2>&1 \
      || tail -3 "$W/export_$p.log"
  done
  variants=(-v onnxruntime:fp32); [ -d "$W/dep_demo_fp16" ] && variants+=(-v onnxruntime:fp16)
  timeout 120 "${CLI[@]}" benchmark -c demo --device cuda --deploy-dir "$W/dep_demo_fp32" --warmup 20 -n 50 \
      -v pytorch:fp32 "${variants[@]}" --no-scaling --no-plots -o "$W/demo_fp" > "$W/demo_fp.log" 2>&1
  timeout 60 "${CLI[@]}" benchmark -c demo --device cuda --deploy-dir "$W/dep_demo_fp16" --warmup 20 -n 50 \
      -v onnxruntime:fp16 --no-scaling --no-plots -o "$W/demo_fp16" > "$W/demo_fp16.log" 2>&1
  timeout 60 "${CLI[@]}" benchmark -c demo --device cuda --deploy-dir "$W/dep_demo_int8" --warmup 20 -n 50 \
      -v onnxruntime:int8 --no-scaling --no-plots -o "$W/demo_int8" > "$W/demo_int8.log" 2>&1
  cat "$W"/demo_fp/benchmark.md "$W"/demo_fp16/benchmark.md "$W"/demo_int8/benchmark.md > "$OUT/demo_precisions.md" 2>&1
  tail -4 "$W"/demo_fp16.log "$W"/demo_int8.log
  ;;
esac
