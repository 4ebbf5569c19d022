#!/usr/bin/env bash
# One batched GPU run of every benchmark: bash benchmarks/run_gpu.sh OUT_DIR
#
# Writes at most 8 flat files into OUT_DIR (paste summary.md into docs/benchmarks.md):
#   summary.md           machine + every results table (Markdown)
#   j6gen2.json, demo.json               full reports (BenchmarkReport.to_dict())
#   j6gen2_stages.png, j6gen2_scaling.png, demo_stages.png
#   log.txt              commands, skipped variants with reasons, CUDA tests
#   accuracy.json        fp16/bf16 vs fp32 mAP (only with DEMO_CHECKPOINT and DEMO_DATASET set)
# Optional environment: J6GEN2_CHECKPOINT / DEMO_CHECKPOINT (default random weights),
# DEMO_DATASET (T4 folder / split for the accuracy run), ORT_GPU_WHEEL (an onnxruntime-gpu
# wheel installed into a private folder when onnxruntime has no CUDA provider; default: the
# first .device/ort/*.whl), ITERATIONS (default 100), MODELS (default "j6gen2_base demo"),
# RUN_TESTS / RUN_ACCURACY (1 = run the CUDA tests / the accuracy step; default 1).
# Degrades cleanly: ORT-CUDA and TensorRT variants are listed as skipped, with the reason,
# when their runtime is missing. Budget: about 5 minutes on an H100.
set -uo pipefail
OUT="${1:?usage: bash benchmarks/run_gpu.sh OUT_DIR}"
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="$(mktemp -d)"
LOG="$OUT/log.txt"
ITERATIONS="${ITERATIONS:-100}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
: > "$LOG"
say() { echo "== $*" | tee -a "$LOG"; }
run() { echo "\$ $*" >> "$LOG"; "$@" >> "$LOG" 2>&1; local rc=$?; [ $rc -ne 0 ] && say "exit $rc: $*"; return $rc; }

say "machine"
run nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
run python3 -c "import sys, torch; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), 'gpu', torch.cuda.get_device_name(0))"

# onnxruntime with CUDA: keep the installed one when it has the provider, else try a private wheel install
if ! python3 -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())" 2>/dev/null; then
  WHEEL="${ORT_GPU_WHEEL:-$(ls .device/ort/*.whl 2>/dev/null | head -n 1)}"
  if [ -n "$WHEEL" ] && [ -f "$WHEEL" ]; then
    say "installing $WHEEL into $WORK/ort (private, --no-deps)"
    run python3 -m pip install -q --no-deps --target "$WORK/ort" "$WHEEL" && export PYTHONPATH="$WORK/ort:$PYTHONPATH"
  else
    say "onnxruntime has no CUDA provider and no onnxruntime-gpu wheel was given: ORT-CUDA variants will be skipped"
  fi
fi
run python3 -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
HAVE_TRT=0
python3 -c "import tensorrt" 2>/dev/null && HAVE_TRT=1
[ $HAVE_TRT = 1 ] || say "TensorRT is not installed: TensorRT variants will be skipped"

CLI=(python3 -m centerpoint_deploy)
weights() { if [ -n "${1:-}" ]; then echo "--checkpoint $1"; else echo "--random-weights"; fi; }

for model in ${MODELS:-j6gen2_base demo}; do
  key="${model%_base}"
  ckpt_var="$(echo "${key}" | tr a-z A-Z)_CHECKPOINT"
  ckpt="${!ckpt_var:-}"
  say "$model: export"
  run "${CLI[@]}" export -c "$model" -o "$WORK/deploy_$key" $(weights "$ckpt") --device cuda
  if [ $HAVE_TRT = 1 ]; then
    say "$model: TensorRT fp16 engines"
    run timeout 300 "${CLI[@]}" build-engine "$WORK/deploy_$key" --precision fp16 --timing-cache "$WORK/trt.cache"
  fi
  pt_ckpt=(); [ -n "$ckpt" ] && pt_ckpt=(--checkpoint "$ckpt")
  if [ "$key" = j6gen2 ]; then
    scaling=(--scaling --scaling-iterations 10)
    variants=()  # the default CUDA set (docs/benchmarks.md)
  else
    scaling=(--no-scaling)
    variants=(-v pytorch:fp32 -v pytorch:fp16+channels_last+fuse_batchnorm -v pytorch:fp16+channels_last+fuse_batchnorm+cuda_graph+static -v onnxruntime:fp32 -v onnxruntime:fp16 -v tensorrt:fp16)
  fi
  say "$model: benchmark"
  run timeout 420 "${CLI[@]}" benchmark -c "$model" --device cuda --deploy-dir "$WORK/deploy_$key" "${pt_ckpt[@]}" \
      --warmup 20 -n "$ITERATIONS" "${variants[@]}" "${scaling[@]}" -o "$WORK/bench_$key"
  [ -f "$WORK/bench_$key/benchmark.json" ] && cp "$WORK/bench_$key/benchmark.json" "$OUT/$key.json"
  for plot in stages scaling; do
    [ -f "$WORK/bench_$key/$plot.png" ] && cp "$WORK/bench_$key/$plot.png" "$OUT/${key}_$plot.png"
  done
  [ -f "$WORK/bench_$key/benchmark.md" ] && { cat "$WORK/bench_$key/benchmark.md"; echo; } >> "$WORK/summary.md"
done

[ "${RUN_TESTS:-1}" = 1 ] && say "CUDA tests (sync-free pipeline, CUDA vs CPU)" && run python3 -m pytest -q -m cuda tests/benchmark tests/preprocess tests/postprocess tests/test_detector.py -p no:cacheprovider

if [ "${RUN_ACCURACY:-1}" = 1 ] && [ -n "${DEMO_CHECKPOINT:-}" ] && [ -n "${DEMO_DATASET:-}" ]; then
  say "demo: fp16 / bf16 mAP against fp32"
  run timeout 240 python3 benchmarks/fp16_accuracy.py --config demo --checkpoint "$DEMO_CHECKPOINT" \
      --dataset "$DEMO_DATASET" --out "$WORK/accuracy" --device cuda --variant pytorch:fp16+channels_last+fuse_batchnorm --variant pytorch:bf16+channels_last+fuse_batchnorm
  [ -f "$WORK/accuracy/accuracy.json" ] && cp "$WORK/accuracy/accuracy.json" "$OUT/accuracy.json"
else
  say "accuracy run skipped: set DEMO_CHECKPOINT and DEMO_DATASET to compare fp16/bf16 mAP with fp32"
fi

{ echo "## GPU results ($(date -u +%Y-%m-%d))"; echo; cat "$WORK/summary.md" 2>/dev/null; } > "$OUT/summary.md"
say "done: $(ls "$OUT" | tr '\n' ' ')"
rm -rf "$WORK"
