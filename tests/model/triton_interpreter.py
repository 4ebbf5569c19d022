"""Run a script that launches a Triton kernel in Triton's interpreter (on the CPU), in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def interpreted_output(script: str) -> str:
    """``script``'s standard output, run with ``TRITON_INTERPRET=1``; skips where ``triton`` is not installed."""
    pytest.importorskip("triton", reason="the triton package is not installed (CPU-only torch)")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()
