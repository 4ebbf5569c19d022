"""Reader pools: kept across passes over one dataset, never serving stale records, never hanging."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from centerpoint_deploy.data import readers
from centerpoint_deploy.data.dataset import FrameDataset, FrameRecord
from centerpoint_deploy.data.frame import Frame
from centerpoint_deploy.data.loader import FrameLoader
from centerpoint_deploy.data.pointcloud import write_points_bin
from centerpoint_deploy.data.sweeps import SweepOptions
from centerpoint_deploy.errors import DatasetError

REPO = Path(__file__).resolve().parents[2]


def _dataset(tmp_path: Path, frames: int = 8) -> FrameDataset:
    rng = np.random.default_rng(3)
    records = []
    for i in range(frames):
        path = tmp_path / f"{i}.bin"
        write_points_bin(path, rng.normal(0, 5, (40 + 5 * i, 5)))
        records.append(FrameRecord(f"t{i}", "s", 1000 * i, str(path), np.eye(4), np.eye(4)))
    return FrameDataset(records, ("car",), load_dim=5, sweep_options=SweepOptions(sweeps_num=0))


def _indices(loader: FrameLoader) -> list[int]:
    return [frame.index for batch in loader for frame in batch.frames]


def _pids(pool: readers.ReaderPool) -> list[int]:
    return [process.pid for process in pool._processes]


def test_the_shared_readers_serve_every_pass_over_the_same_records(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path)
    FrameLoader(dataset, range(8), [0, 1, 2], workers=2).start()
    first = readers._shared
    assert first is not None and not first.busy
    assert _indices(FrameLoader(dataset, range(8), [0, 1, 2], workers=2)) == list(range(8))
    assert _indices(FrameLoader(dataset, [5, 1], [0, 1, 2], workers=2)) == [5, 1]   # a shorter pass, same readers
    assert readers._shared is first and _pids(first) == _pids(readers._shared)

    dataset.records[3] = dataclasses.replace(dataset.records[3], lidar_path=dataset.records[4].lidar_path)
    loader = FrameLoader(dataset, [3], None, workers=2)
    (batch,) = list(loader)
    np.testing.assert_array_equal(batch.frames[0].points.numpy(), dataset[4].points)  # not the record forked
    assert readers._shared is not first and first.closed
    assert all(not p.is_alive() for p in first._processes)


def test_a_batch_is_read_side_by_side_and_comes_in_order(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path)
    batches = list(FrameLoader(dataset, [7, 6, 5, 4, 3, 2, 1], [0, 1, 2, 3, 4], workers=2, batch_size=3))
    assert [[f.index for f in b.frames] for b in batches] == [[7, 6, 5], [4, 3, 2], [1]]
    for batch in batches:
        for frame in batch.frames:
            np.testing.assert_array_equal(frame.points.numpy(), dataset[frame.index].points)


def test_a_pass_inside_a_pass_gets_readers_of_its_own(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path)
    outer = iter(FrameLoader(dataset, range(8), None, workers=1, prefetch=1))
    taken = [next(outer).frames[0].index]
    shared = readers._shared
    assert shared is not None and shared.busy
    assert _indices(FrameLoader(dataset, [2, 0], None, workers=1)) == [2, 0]
    assert readers._shared is shared
    taken += [batch.frames[0].index for batch in outer]
    assert taken == list(range(8))


class _BuggyDataset(FrameDataset):
    """Frame 2's reading hits a bug (not a user error)."""

    def load(self, record: FrameRecord) -> Frame:
        if record.token == "t2":
            raise ValueError("a bug in the reader")
        return super().load(record)


def test_a_reader_bug_is_raised_with_its_traceback(tmp_path: Path) -> None:
    plain = _dataset(tmp_path)
    dataset = _BuggyDataset(plain.records, plain.class_names, plain.load_dim, plain.sweep_options)
    with pytest.raises(RuntimeError, match="(?s)frame position 2.*ValueError: a bug in the reader"):
        _indices(FrameLoader(dataset, range(8), None, workers=1))
    assert _indices(FrameLoader(dataset, [0, 1], None, workers=1)) == [0, 1]   # the readers go on


def test_a_reader_that_dies_ends_the_pass_with_an_error(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, frames=40)
    batches = iter(FrameLoader(dataset, range(40), None, workers=1, prefetch=1))
    next(batches)
    pool = readers._shared
    os.kill(pool._processes[0].pid, signal.SIGKILL)
    begin = time.monotonic()
    with pytest.raises(DatasetError, match="frame reader process .* stopped"):
        for _ in batches:
            pass
    assert time.monotonic() - begin < 10 and pool.closed
    assert _indices(FrameLoader(dataset, [1, 0], None, workers=1)) == [1, 0]   # new readers


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_readers_exit_when_their_process_dies_without_closing_them(tmp_path: Path) -> None:
    _dataset(tmp_path)
    script = (
        "import os, sys, numpy as np\n"
        "from pathlib import Path\n"
        "from centerpoint_deploy.data import readers\n"
        "from centerpoint_deploy.data.dataset import FrameDataset, FrameRecord\n"
        "from centerpoint_deploy.data.loader import FrameLoader\n"
        "from centerpoint_deploy.data.sweeps import SweepOptions\n"
        f"folder = Path({str(tmp_path)!r})\n"
        "records = [FrameRecord(f't{i}', 's', i, str(folder / f'{i}.bin'), np.eye(4), np.eye(4)) for i in range(8)]\n"
        "dataset = FrameDataset(records, ('car',), 5, SweepOptions(sweeps_num=0))\n"
        "FrameLoader(dataset, range(8), None, workers=2).start()\n"
        "print(' '.join(str(p.pid) for p in readers._shared._processes), flush=True)\n"
        "os._exit(0)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    pids = [int(p) for p in done.stdout.split()]
    assert len(pids) == 2, done.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie, reaped by nobody, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_pass_holds_the_frames_it_handed_out_until_it_ends(tmp_path: Path) -> None:
    """The last batch's slots stay the consumer's (its upload may still read them) until the pass ends."""
    dataset = _dataset(tmp_path)
    pool = readers.ReaderPool(dataset, 1, readers.SlotPlan(count=3, rows=200, width=5, frame_rows=100))
    try:
        with pool.reading([0, 1], None) as frames:
            items = list(frames)   # every frame handed out, none released
            assert [item.index for item in items] == [0, 1] and pool.busy
            assert {item.position for item in items} <= pool._outstanding
            with pytest.raises(DatasetError, match="still running"):
                with pool.reading([2], None):
                    pass
        assert not pool.busy and not pool._outstanding
        with pool.reading([2, 3], None) as frames:   # the next pass: positions go on, slots free
            assert [item.position for item in frames] == [2, 3]
    finally:
        pool.close()


class _ThreadProbe(FrameDataset):
    """Each frame's token says how many threads numpy's BLAS may use in the process that read it."""

    def load(self, record: FrameRecord) -> Frame:
        from threadpoolctl import threadpool_info

        frame = super().load(record)
        blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
        return dataclasses.replace(frame, token=str(max(blas, default=1)))


def test_readers_run_numpy_on_one_thread(tmp_path: Path) -> None:
    plain = _dataset(tmp_path)
    dataset = _ThreadProbe(plain.records, plain.class_names, plain.load_dim, plain.sweep_options)
    (batch,) = list(FrameLoader(dataset, [0], None, workers=1))
    assert batch.frames[0].token == "1"
