#!/usr/bin/env bash
# The first command of the README: set up (as scripts/setup.sh), then run the main job with no
# arguments: the bundled demo model on the generated sample validation set, ONNX export,
# verification, evaluation, benchmark and one report under outputs/deploy-<timestamp>/.
# Extra arguments go to `centerpoint-deploy deploy` (e.g. --device cuda, --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -m centerpoint_deploy deploy "$@"
