"""The pure part of benchmarks/loop_timeline.py: the per-stream summary of a Chrome trace's device events."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_SCRIPT = Path(__file__).parents[2] / "benchmarks" / "loop_timeline.py"
_spec = importlib.util.spec_from_file_location("loop_timeline", _SCRIPT)
timeline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(timeline)


def _event(cat: str, name: str, ts: float, dur: float, stream: int, **args) -> dict:
    return {"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": dur, "args": {"stream": stream, **args}}


def test_union_counts_overlaps_once() -> None:
    assert timeline._union([(0, 2), (1, 3), (5, 6), (5.5, 5.8)]) == 4.0
    assert timeline._union([]) == 0.0


def test_streams_busy_time_copies_and_the_share_of_the_span_a_frame() -> None:
    trace = {"traceEvents": [
        _event("kernel", "gather", 0, 10, 7), _event("kernel", "gather", 20, 10, 7),
        _event("kernel", "conv", 5, 10, 9),  # overlaps stream 7's first kernel
        _event("gpu_memcpy", "Memcpy HtoD (Pinned -> Device)", 30, 10, 9, bytes=2e6),
        {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "ts": 0, "dur": 99, "args": {}},  # host: ignored
    ]}
    text = timeline.timeline_table(trace, frames=2)
    lines = text.splitlines()
    # span 0..40 us over 2 frames; some stream busy 0-15, 20-40: 35 us; kernels 0-15, 20-30: 25 us
    assert lines[0].startswith("2 frames in 0.0 ms of device time span (20 us a frame): some stream busy 18 us "
                               "a frame (88%), some kernel running 12 us a frame (62%)")
    rows = {line.split(" | ")[0].strip("| "): line for line in lines if line.startswith("| ") and "stream" not in line}
    assert "| 7 | 10 | 1 | 10 |" in rows["7"] and "gather 10" in rows["7"]
    # stream 9: one kernel and one 2 MB copy in 10 us (200 GB/s), per frame halved
    assert "| 9 | 10 | 0 | 5 |" in rows["9"] and "HtoD (Pinned -> Device): 0.5, 1.00, 5, 200.0" in rows["9"]
    assert timeline.timeline_table({"traceEvents": []}, frames=1) == "(no device activity recorded)"
