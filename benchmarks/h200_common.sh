# Sourced by the benchmarks/h200_round*.sh scripts: `source "$(dirname "$0")/h200_common.sh" "$@"`.
# Reads PART and OUT from the arguments, moves to the repository root, puts it on PYTHONPATH, sets
# CLI (the command line) and writes OUT/machine.txt (GPU, driver, Python, torch, onnxruntime if any).
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
