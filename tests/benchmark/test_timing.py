"""Timing harness logic with a fake clock: warm-up, marks per stage, percentiles, aggregation."""

from __future__ import annotations

import pytest

from centerpoint_deploy.errors import BenchmarkError
from centerpoint_deploy.benchmark.timing import (
    HostClock,
    LatencyStats,
    summarize_stages,
    time_calls,
    time_stages,
)


class FakeClock:
    """A clock that reads ``now`` (seconds); tests advance it from inside the timed calls."""

    def __init__(self) -> None:
        self.now = 0.0
        self.syncs = 0

    def mark(self) -> float:
        return self.now

    def seconds(self, start: float, end: float) -> float:
        return end - start

    def synchronize(self) -> None:
        self.syncs += 1


def test_percentiles_interpolate_linearly_between_order_statistics() -> None:
    stats = LatencyStats.from_seconds([0.001 * v for v in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)])
    assert stats.count == 10
    assert stats.p50 == pytest.approx(5.5)  # between the 5th and 6th of 10: 5 + 0.5 * (6 - 5)
    assert stats.p90 == pytest.approx(9.1)  # rank 0.9 * 9 = 8.1 -> 9 + 0.1 * (10 - 9)
    assert stats.p99 == pytest.approx(9.91)  # rank 8.91 -> 9 + 0.91
    assert stats.mean == pytest.approx(5.5)
    assert stats.min == pytest.approx(1.0) and stats.max == pytest.approx(10.0)
    assert stats.fps == pytest.approx(1000 / 5.5)
    assert stats.to_dict()["fps"] == pytest.approx(1000 / 5.5)


def test_no_samples_is_an_error() -> None:
    with pytest.raises(BenchmarkError, match="no samples"):
        LatencyStats.from_seconds([])


def test_time_calls_skips_warmup_and_times_each_iteration() -> None:
    clock = FakeClock()
    durations = iter([5.0, 5.0, 0.1, 0.2, 0.3])  # two warm-up calls are slow

    def run() -> None:
        clock.now += next(durations)

    samples = time_calls(run, clock, warmup=2, iterations=3)
    assert samples == pytest.approx([0.1, 0.2, 0.3])
    assert clock.syncs == 1 + 3  # after warm-up, then once per iteration


@pytest.mark.parametrize("warmup, iterations", [(-1, 3), (0, 0)])
def test_bad_counts_are_rejected(warmup: int, iterations: int) -> None:
    with pytest.raises(BenchmarkError, match=f"warmup={warmup}, iterations={iterations}"):
        time_calls(lambda: None, FakeClock(), warmup=warmup, iterations=iterations)


def test_time_stages_marks_where_the_run_says_a_stage_ended() -> None:
    clock = FakeClock()
    runs = []

    def run(hook) -> None:
        runs.append(1)
        x = 1 * 2
        clock.now += 0.002
        hook("double")
        x += 1
        clock.now += 0.003 * x  # depends on the value of the earlier stage
        hook("add")

    samples = time_stages(run, clock, warmup=1, iterations=2)
    assert len(runs) == 3
    assert samples["double"] == pytest.approx([0.002, 0.002])
    assert samples["add"] == pytest.approx([0.009, 0.009])  # x = 1 * 2 + 1 = 3 -> 3 ms each
    stats = summarize_stages(samples)
    assert list(stats) == ["double", "add", "sum of stages"]
    assert stats["sum of stages"].p50 == pytest.approx(11.0)


def test_stage_names_must_be_distinct() -> None:
    with pytest.raises(BenchmarkError, match="distinct"):
        time_stages(lambda hook: (hook("a"), hook("a")), FakeClock(), warmup=0, iterations=1)


def test_summaries_need_equal_sample_counts() -> None:
    with pytest.raises(BenchmarkError, match="different sample counts"):
        summarize_stages({"a": [0.1], "b": [0.1, 0.2]})


def test_host_clock_reads_the_given_time_source() -> None:
    ticks = iter([1.0, 1.25])
    clock = HostClock(now=lambda: next(ticks))
    start, end = clock.mark(), clock.mark()
    assert clock.seconds(start, end) == 0.25
