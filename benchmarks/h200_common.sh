# Sourced by the benchmarks/h200_round*.sh scripts: `source "$(dirname "$0")/h200_common.sh" "$@"`.
# Reads PART and OUT from the arguments, moves to the repository root, puts it on PYTHONPATH, sets
# CLI (the command line) and writes OUT/machine.txt (GPU, driver, Python, torch, onnxruntime if any).
# Sets W (the round's scratch folder, /tmp/<script name>) and TORCHINDUCTOR_CACHE_DIR under it (the
# CLI's and the scripts' runs share one compile cache), the variant names B, GC, FN and FNR (rounds
# 15-17), and defines loop (rounds 14-17), which writes its scratch files under W, and side_by_side
# (rounds 14, 15 and 17), one_sweep_scene, startup_run, steady_loop and default_loops, and startup_and_default_loops
# (rounds 18-20).
set -uo pipefail
part=${1:?usage: $(basename "$0") PART OUT}
OUT=${2:?usage: $(basename "$0") PART OUT}
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
CLI=(python3 -m centerpoint_deploy)
mkdir -p "$OUT"
{
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  python3 - <<'PY'
import sys, torch
line = [sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version()]
try:
    import onnxruntime
    line += ["onnxruntime", onnxruntime.__version__, onnxruntime.get_available_providers()]
except ImportError:
    line += ["no onnxruntime"]
print(*line)
PY
} > "$OUT/machine.txt" 2>&1

W=/tmp/$(basename "$0" .sh)
mkdir -p "$W"
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$W/inductor}
B=pytorch:fp16+channels_last+fuse_batchnorm
GC="$B+fuse_relu+compile+pipeline_graph"                          # round 11's loop variant, compiled
FN="$B+fuse_heads+fuse_neck+compile+max_autotune+pipeline_graph"  # compiled, both fusions
FNR="$B+fuse_relu+fuse_heads+fuse_neck+compile+max_autotune+pipeline_graph"  # and cuDNN's conv + bias + ReLU

# loop SECONDS FRAMES SWEEPS VARIANT FILE: evaluate_throughput.py at batch 1, its rows appended to OUT/FILE
loop() {
  timeout "$1" python3 benchmarks/evaluate_throughput.py --device cuda --frames "$2" --sweeps "$3" --variant "$4" \
      --batch-size 1 --out "$W/e$3" > "$W/loop.log" 2>&1
  grep -v Warning "$W/loop.log" | grep '^|\|^{' >> "$OUT/$5"; tail -1 "$W/loop.log"
}
# side_by_side CONFIG FILE [VARIANT...]: the benchmark CLI, eager fp32 next to FN (or the variants given), its
# report copied to OUT/FILE; SIDE_SECONDS (default 400) bounds the run
side_by_side() {
  local config=$1 file=$2 v=(); shift 2
  for variant in "${@:-$FN}"; do v+=(-v "$variant"); done
  timeout "${SIDE_SECONDS:-400}" "${CLI[@]}" benchmark -c "$config" --device cuda --warmup 20 -n 50 -v pytorch:fp32 "${v[@]}" \
      --no-scaling --no-plots -o "$W/$config" > "$W/$config.log" 2>&1
  cp "$W/$config/benchmark.md" "$OUT/$file"; grep '^|' "$OUT/$file" | cut -c1-60,200- | tail -9
}

# one_sweep_scene: a 200-frame 1-sweep scene generated into W/e1/data/synth-1sweeps
one_sweep_scene() {
  python3 -c "from centerpoint_deploy.data.synthetic import *; from pathlib import Path; generate_dataset(
      Path('$W/e1/data/synth-1sweeps'), 1, 200, 0, LidarConfig(beams=64, columns=1800), WorldConfig(), key_frame_interval=5,
      lead_in_sweeps=1)"
}
# startup_run I [FLAG...]: evaluate of 4 frames of that scene under startup_phases.py (FLAG: the script's own, e.g.
# --no-cuda-warmup), its table into OUT/startup_phases_I.md
startup_run() {
  local i=$1; shift
  timeout 25 python3 benchmarks/startup_phases.py "$@" --dataset "$W/e1/data/synth-1sweeps" --config demo --device cuda \
      --no-plots --no-cache --max-frames 4 --out "$W/p$i" 2>/dev/null | grep '^|' > "$OUT/startup_phases_$i.md"
  echo "run $i $* (rc ${PIPESTATUS[0]})"; grep 'imported\|dataset\|context\|detectors built\|first frame' "$OUT/startup_phases_$i.md"
}
# steady_loop SWEEPS FRAMES SECONDS: the steady loop with the defaults (GC) over FRAMES frames of SWEEPS sweeps (the
# 1-sweep scene above for 1), its rows into OUT/evaluate_throughput_<SWEEPS>sweep(s)_default.md
steady_loop() {
  local name=evaluate_throughput_${1}sweeps_default.md
  [ "$1" = 1 ] && name=evaluate_throughput_1sweep_default.md
  timeout "$3" python3 benchmarks/evaluate_throughput.py --device cuda --frames "$2" --sweeps "$1" --variant "$GC" \
      --out "$W/e$1" > "$W/loop$1.log" 2>&1
  grep -v Warning "$W/loop$1.log" | grep '^|\|^{' > "$OUT/$name"; tail -1 "$W/loop$1.log"
}
# default_loops SECONDS: steady_loop with 1 sweep (200 frames, 200 s) and 10 sweeps (80 frames, SECONDS)
default_loops() {
  steady_loop 1 200 200
  steady_loop 10 80 "$1"
}
# startup_and_default_loops SECONDS: the scene, three start-up runs, the default loops (rounds 18-20)
startup_and_default_loops() {
  one_sweep_scene
  for i in 1 2 3; do startup_run $i; done
  default_loops "$1"
}
