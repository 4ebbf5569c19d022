"""The frame loader: worker processes read frames in order, columns selected, errors as themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from centerpoint_deploy.data.dataset import FrameDataset, FrameRecord, SweepRecord
from centerpoint_deploy.data.device_merge import merge_on_device
from centerpoint_deploy.data.geometry import make_transform, yaw_to_quaternion
from centerpoint_deploy.data.loader import FrameLoader, load_clouds
from centerpoint_deploy.data.pointcloud import write_points_bin
from centerpoint_deploy.data.sweeps import SweepOptions
from centerpoint_deploy.errors import DatasetError, PointCloudError


def _dataset(tmp_path: Path, frames: int = 5, sweeps_num: int = 2) -> FrameDataset:
    rng = np.random.default_rng(1)
    records = []
    for i in range(frames):
        path = tmp_path / f"{i}.bin"
        write_points_bin(path, rng.normal(0, 5, (50 + 7 * i, 5)))
        sweeps = tuple(SweepRecord(str(tmp_path / f"{j}.bin"), 1000 * j, np.eye(4)) for j in range(i - 1, -1, -1))
        records.append(FrameRecord(f"t{i}", "s", 1000 * i, str(path), np.eye(4), np.eye(4), sweeps[:sweeps_num]))
    return FrameDataset(records, ("car",), load_dim=5, sweep_options=SweepOptions(sweeps_num=sweeps_num))


@pytest.mark.parametrize("workers", [0, 2])
def test_frames_in_order_with_sweeps_and_columns(tmp_path: Path, workers: int) -> None:
    dataset = _dataset(tmp_path)
    order = [3, 0, 4, 1]
    loader = FrameLoader(dataset, order, [0, 1, 2, 4], workers=workers, prefetch=2)
    assert loader.workers == workers
    taken = []
    for batch in loader:
        (frame,) = batch.frames
        taken.append(frame.index)
        expected = dataset[frame.index].points[:, [0, 1, 2, 4]]   # the same merge code as an indexed frame
        assert frame.token == f"t{frame.index}" and frame.read_seconds >= 0
        assert frame.points.dtype == torch.float32 and frame.points.is_contiguous()
        np.testing.assert_array_equal(frame.points.numpy(), expected)
    assert taken == order
    clouds = load_clouds(dataset, [2, 1], None, workers=1)
    assert [c.shape[0] for c in clouds] == [dataset[2].points.shape[0], dataset[1].points.shape[0]]


@pytest.mark.parametrize("columns", [None, [0, 1, 2, 4]])
def test_frames_merged_after_the_upload_equal_the_readers_merge(tmp_path: Path, columns: list[int] | None,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The readers hand over each frame's sources as read (moving sweeps, a first frame padded with
    copies of itself, a frame too large for its slot that comes merged the default way); the
    loader's merge gives the indexed frame's points bit for bit."""
    rng = np.random.default_rng(4)
    records = []
    for i in range(10):
        path = tmp_path / f"{i}.bin"
        points = rng.normal(0, 20, (3000 if i == 9 else 200, 5)).astype(np.float32)
        points[:30, :2] *= 0.01  # close to the sensor
        write_points_bin(path, points)
        sweeps = tuple(SweepRecord(str(tmp_path / f"{j}.bin"), 1000 * j,
                                   make_transform(yaw_to_quaternion(0.4 * (i - j)), [3.0 * (i - j), 1.0, 0.0]))
                       for j in range(i - 1, max(i - 3, 0) - 1, -1))
        records.append(FrameRecord(f"t{i}", "s", 1000 * i, str(path), np.eye(4), np.eye(4), sweeps))
    dataset = FrameDataset(records, ("car",), load_dim=5, sweep_options=SweepOptions(sweeps_num=2))
    from centerpoint_deploy.data import loader as loader_module

    merged = []
    monkeypatch.setattr(loader_module, "merge_on_device", lambda raw, layout: merged.append(layout.parts) or
                        merge_on_device(raw, layout))
    loader = FrameLoader(dataset, list(range(10)), columns, workers=2, device_merge=True)
    assert loader.device_merge and not FrameLoader(dataset, [0], columns).device_merge  # on the host: in the readers
    for batch in loader:
        (frame,) = batch.frames
        expected = dataset[frame.index].points if columns is None else dataset[frame.index].points[:, columns]
        assert frame.points.shape == expected.shape
        assert np.array_equal(frame.points.numpy().view(np.int32), expected.view(np.int32)), frame.index
    assert len(merged) == 9 and len(merged[0]) == 3  # all but the large frame; frame 0: itself three times


def test_batches_keep_clouds_as_a_list(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path)
    (first, second) = list(FrameLoader(dataset, [0, 1, 2, 3], [0, 1, 2], workers=1, batch_size=2))
    assert [c.shape[0] for c in first.clouds] == [dataset[0].points.shape[0], dataset[1].points.shape[0]]
    assert len(second.frames) == 2


@pytest.mark.parametrize("content, message", [(b"\0" * 7, "not a multiple"),
                                              (np.full((4, 5), np.nan, np.float32).tobytes(), "NaN or inf")])
def test_a_bad_sweep_read_unmerged_raises_the_readers_own_error(tmp_path: Path, content: bytes, message: str) -> None:
    """A reader reading a frame's sources for the device merge checks each file as a merged read does."""
    dataset = _dataset(tmp_path, sweeps_num=2)
    Path(dataset.records[1].lidar_path).write_bytes(content)  # frame 1's key frame, frame 2's first sweep
    with pytest.raises(PointCloudError, match=message) as caught:
        list(FrameLoader(dataset, [0, 2, 3], None, workers=1, device_merge=True))
    assert "1.bin" in str(caught.value)


@pytest.mark.parametrize("workers", [0, 1])
def test_a_bad_frame_raises_the_readers_own_error(tmp_path: Path, workers: int) -> None:
    dataset = _dataset(tmp_path, sweeps_num=0)
    Path(dataset.records[2].lidar_path).write_bytes(b"\0" * 7)      # not a whole number of points
    with pytest.raises(PointCloudError) as caught:
        list(FrameLoader(dataset, [0, 1, 2, 3], None, workers=workers))
    assert "2.bin" in str(caught.value) and "Traceback" not in str(caught.value)
    with pytest.raises(DatasetError, match="workers >= 0"):
        FrameLoader(dataset, [0], None, workers=-1)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("sweeps_num", [1, 2])  # merged in the reader, and after the upload
def test_cuda_frames_pinned_and_uploaded_ahead(tmp_path: Path, sweeps_num: int) -> None:
    dataset = _dataset(tmp_path, sweeps_num=sweeps_num)
    loader = FrameLoader(dataset, [0, 1, 2], [0, 1, 2], workers=1, device="cuda")
    assert loader.device_merge is (sweeps_num > 1)
    batches = list(loader)
    for batch in batches:
        (frame,) = batch.frames
        assert frame.points.is_cuda
        np.testing.assert_array_equal(frame.points.cpu().numpy(), dataset[frame.index].points[:, :3])


def test_slots_are_reused_and_host_batches_stay_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two readers, one frame ahead each: 5 slots for 20 frames (frame 15 is bigger than any slot and
    comes the default way); every batch kept is still right after the slots took later frames."""
    dataset = _dataset(tmp_path, frames=20, sweeps_num=0)
    rng = np.random.default_rng(2)
    for index, record in enumerate(dataset.records):
        write_points_bin(record.lidar_path, rng.normal(0, 5, (900 if index == 15 else 60, 5)))
    from centerpoint_deploy.data import loader as loader_module

    copied = []  # the host's copies out of the slots: one per frame that came through them
    monkeypatch.setattr(loader_module, "_own_copy", lambda points: copied.append(1) or points.clone())
    batches = list(FrameLoader(dataset, list(range(20)), [0, 1, 2, 3, 4], workers=2, prefetch=1))
    assert [f.index for b in batches for f in b.frames] == list(range(20))
    assert len(copied) == 19
    for position, batch in enumerate(batches):
        np.testing.assert_array_equal(batch.frames[0].points.numpy(), dataset[position].points)


def test_a_pass_stopped_early_ends_its_readers(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, frames=12, sweeps_num=0)
    loader = FrameLoader(dataset, list(range(12)), None, workers=2, prefetch=1)
    for _ in range(2):   # readers blocked on a slot are woken and stopped; the loader can be iterated again
        batches = iter(loader)
        next(batches)
        batches.close()
    assert [f.index for b in loader for f in b.frames] == list(range(12))


def test_columns_out_of_range_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="out of range"):
        FrameLoader(_dataset(tmp_path), [0], [0, 1, 5], workers=0)


def test_readers_started_by_forkserver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Python 3.14's default start method on Linux: the slots reach the readers pickled, not inherited."""
    import multiprocessing

    from centerpoint_deploy.data import loader as loader_module
    from centerpoint_deploy.data import readers

    if "forkserver" not in multiprocessing.get_all_start_methods():
        pytest.skip("no forkserver start method on this platform")
    monkeypatch.setattr(readers, "reader_context", lambda: multiprocessing.get_context("forkserver"))
    copied = []
    monkeypatch.setattr(loader_module, "_own_copy", lambda points: copied.append(1) or points.clone())
    dataset = _dataset(tmp_path, frames=6, sweeps_num=1)
    taken = []
    for batch in FrameLoader(dataset, list(range(6)), [0, 1, 2], workers=1, prefetch=1):
        (frame,) = batch.frames
        np.testing.assert_array_equal(frame.points.numpy(), dataset[frame.index].points[:, :3])
        taken.append(frame.index)
    assert taken == list(range(6)) and len(copied) == 6  # every frame came through the slots


def test_too_little_shared_memory_hands_frames_over_the_default_way(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from centerpoint_deploy.data import loader as loader_module

    monkeypatch.setattr(loader_module, "_shared_memory_free", lambda: 1000)
    dataset = _dataset(tmp_path, frames=4, sweeps_num=0)
    with pytest.warns(UserWarning, match="shared memory"):
        batches = list(FrameLoader(dataset, [0, 1, 2, 3], None, workers=1))
    for index, batch in enumerate(batches):
        np.testing.assert_array_equal(batch.frames[0].points.numpy(), dataset[index].points)


def test_default_readers_grow_with_the_files_a_frame_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    from centerpoint_deploy.data import loader as loader_module

    monkeypatch.setattr(loader_module.os, "cpu_count", lambda: 16)
    assert [loader_module.default_workers(files) for files in (1, 2, 6, 11)] == [4, 4, 4, 8]
    monkeypatch.setattr(loader_module.os, "cpu_count", lambda: 6)
    assert loader_module.default_workers(11) == 5  # one core left to the main process
    monkeypatch.setattr(loader_module.os, "cpu_count", lambda: 1)
    assert loader_module.default_workers(11) == 0


@pytest.mark.parametrize("sweeps_num, on_device", [(0, False), (1, False), (2, True), (10, True)])
def test_frames_with_sweeps_are_merged_on_the_device_by_default(tmp_path: Path, sweeps_num: int,
                                                                 on_device: bool) -> None:
    """A key frame with up to one sweep is merged in the readers; frames with more sweeps after the upload."""
    dataset = _dataset(tmp_path, frames=2, sweeps_num=sweeps_num)
    assert FrameLoader(dataset, [0, 1], None, device="cuda").device_merge is on_device  # no CUDA needed to decide
    assert not FrameLoader(dataset, [0, 1], None).device_merge  # on the host: always in the readers
