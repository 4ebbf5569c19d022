#!/usr/bin/env bash
# Sets up and runs the whole test suite: bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -m pytest -q "$@"
