"""Clocks, repeated measurement and latency statistics.

A clock hands out opaque time marks and turns two marks into seconds. :class:`HostClock`
reads ``time.perf_counter``; :class:`CudaClock` records CUDA events on the current stream, so
marks between stages cost no host synchronisation: the durations are read after one
:meth:`Clock.synchronize` at the end of an iteration.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch

from centerpoint_deploy.errors import BenchmarkError

#: The latency percentiles every report gives.
PERCENTILES = (50, 90, 99)


class Clock(Protocol):
    """Source of time marks; ``seconds(a, b)`` is valid only after :meth:`synchronize`."""

    def mark(self) -> Any: ...

    def seconds(self, start: Any, end: Any) -> float: ...

    def synchronize(self) -> None: ...


class HostClock:
    """``time.perf_counter`` marks (CPU work: every stage has finished when its call returns)."""

    def __init__(self, now: Callable[[], float] = time.perf_counter) -> None:
        self._now = now

    def mark(self) -> float:
        return self._now()

    def seconds(self, start: float, end: float) -> float:
        return end - start

    def synchronize(self) -> None:
        """Nothing runs asynchronously on the host."""


class CudaClock:
    """CUDA events recorded on the current stream of ``device``.

    A mark is an event recorded where the host has queued work so far; the time between two
    marks is the GPU time between them (:meth:`torch.cuda.Event.elapsed_time`), readable after
    :meth:`synchronize`. Recording events does not synchronise the host.
    """

    def __init__(self, device: torch.device | str = "cuda") -> None:
        self.device = torch.device(device)

    def mark(self) -> torch.cuda.Event:
        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(self.device))
        return event

    def seconds(self, start: torch.cuda.Event, end: torch.cuda.Event) -> float:
        return start.elapsed_time(end) / 1000.0

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)


class WallClock(HostClock):
    """Host wall time that first waits for ``device``'s queued work: end-to-end latency as a caller sees it."""

    def __init__(self, device: torch.device | str, now: Callable[[], float] = time.perf_counter) -> None:
        super().__init__(now)
        self.device = torch.device(device)

    def mark(self) -> float:
        self.synchronize()
        return super().mark()

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def stage_clock(device: torch.device | str) -> Clock:
    """The clock for per-stage marks on ``device``: CUDA events on a GPU, ``perf_counter`` on the CPU."""
    device = torch.device(device)
    return CudaClock(device) if device.type == "cuda" else HostClock()


@dataclass(frozen=True)
class LatencyStats:
    """Summary of one series of durations, in milliseconds.

    ``p50``/``p90``/``p99`` use linear interpolation between order statistics (numpy's default);
    ``fps`` is ``1000 / mean``.
    """

    count: int
    mean: float
    std: float
    min: float
    p50: float
    p90: float
    p99: float
    max: float

    @property
    def fps(self) -> float:
        return 1000.0 / self.mean if self.mean > 0 else float("inf")

    @classmethod
    def from_seconds(cls, samples: Sequence[float]) -> "LatencyStats":
        """Summarise durations given in seconds. Raises :class:`BenchmarkError` for no samples."""
        if len(samples) == 0:
            raise BenchmarkError("cannot summarise a latency series with no samples")
        ms = np.asarray(samples, dtype=np.float64) * 1000.0
        p50, p90, p99 = np.percentile(ms, PERCENTILES)
        return cls(count=int(ms.size), mean=float(ms.mean()), std=float(ms.std()), min=float(ms.min()),
                   p50=float(p50), p90=float(p90), p99=float(p99), max=float(ms.max()))

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "fps": self.fps}


def check_counts(warmup: int, iterations: int) -> None:
    """Raise :class:`BenchmarkError` unless ``warmup >= 0`` and ``iterations >= 1``."""
    if warmup < 0 or iterations < 1:
        raise BenchmarkError(f"warmup={warmup}, iterations={iterations} are invalid: need warmup >= 0, iterations >= 1")


def time_calls(run: Callable[[], object], clock: Clock, *, warmup: int, iterations: int) -> list[float]:
    """Call ``run`` ``warmup`` times untimed, then ``iterations`` times, each between two marks.

    Every iteration ends with ``clock.synchronize()`` before its duration is read, so queued
    GPU work of one call never spills into the next.

    Returns:
        ``iterations`` durations in seconds.
    """
    check_counts(warmup, iterations)
    for _ in range(warmup):
        run()
    clock.synchronize()
    durations = []
    for _ in range(iterations):
        start = clock.mark()
        run()
        end = clock.mark()
        clock.synchronize()
        durations.append(clock.seconds(start, end))
    return durations


def time_stages(run: Callable[[Callable[[str], None]], object], clock: Clock, *, warmup: int,
                iterations: int) -> dict[str, list[float]]:
    """Time a pipeline stage by stage.

    ``run(hook)`` runs the pipeline once and calls ``hook(name)`` as each stage ends; a mark is
    taken there (no synchronisation with :class:`CudaClock`), and the clock is synchronised once
    per iteration before the durations are read. A stage lasts from the previous mark (the
    iteration's start for the first) to its own.

    Returns:
        ``{stage name: [seconds per iteration]}`` in stage order.

    Raises:
        BenchmarkError: bad counts, no stages, or a stage name reported twice in one run.
    """
    check_counts(warmup, iterations)
    for _ in range(warmup):
        run(lambda _: None)
    clock.synchronize()
    samples: dict[str, list[float]] = {}
    for _ in range(iterations):
        clock.synchronize()
        marks: list[tuple[str, Any]] = [("", clock.mark())]
        run(lambda name: marks.append((name, clock.mark())))
        clock.synchronize()
        names = [name for name, _ in marks[1:]]
        if not names or len(set(names)) != len(names) or (samples and names != list(samples)):
            raise BenchmarkError(f"stage names must be distinct, non-empty and the same every run, got {names}")
        for (_, start), (name, end) in zip(marks, marks[1:]):
            samples.setdefault(name, []).append(clock.seconds(start, end))
    return samples


def summarize_stages(samples: dict[str, list[float]]) -> dict[str, LatencyStats]:
    """``{stage: LatencyStats}`` plus ``"sum of stages"``: the per-iteration total of all stages."""
    if not samples:
        raise BenchmarkError("no stages to summarise")
    counts = {len(v) for v in samples.values()}
    if len(counts) != 1:
        raise BenchmarkError(f"stages have different sample counts {sorted(counts)}")
    stats = {name: LatencyStats.from_seconds(values) for name, values in samples.items()}
    stats["sum of stages"] = LatencyStats.from_seconds(stage_totals(samples))
    return stats


def stage_totals(samples: dict[str, list[float]]) -> list[float]:
    """Each iteration's total over its stages (seconds): :func:`time_stages`' first mark to its last."""
    return np.sum(np.asarray(list(samples.values()), dtype=np.float64), axis=0).tolist()
