#!/usr/bin/env bash
# Installs the package and its test tools. torch is pinned to the CPU build that this
# project's machines carry; the package itself accepts any torch 2.x (see pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q torch==2.13.0
python3 -m pip install -q -e ".[test]"
