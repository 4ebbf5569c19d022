"""The frame loader: worker processes read frames in order, columns selected, errors as themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from centerpoint_deploy.data.dataset import FrameDataset, FrameRecord, SweepRecord
from centerpoint_deploy.data.loader import FrameLoader, device_prefetch, load_clouds
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
    batches = list(device_prefetch(loader, "cpu"))
    assert [f.index for b in batches for f in b.frames] == order
    for batch in batches:
        (frame,) = batch.frames
        expected = dataset[frame.index].points[:, [0, 1, 2, 4]]   # the same merge code as an indexed frame
        assert frame.token == f"t{frame.index}" and frame.read_seconds >= 0
        assert frame.points.dtype == torch.float32 and frame.points.is_contiguous()
        np.testing.assert_array_equal(frame.points.numpy(), expected)
    clouds = load_clouds(dataset, [2, 1], None, workers=1)
    assert [c.shape[0] for c in clouds] == [dataset[2].points.shape[0], dataset[1].points.shape[0]]


def test_batches_keep_clouds_as_a_list(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path)
    (first, second) = list(FrameLoader(dataset, [0, 1, 2, 3], [0, 1, 2], workers=1, batch_size=2))
    assert [c.shape[0] for c in first.clouds] == [dataset[0].points.shape[0], dataset[1].points.shape[0]]
    assert len(second.frames) == 2


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
def test_cuda_frames_pinned_and_uploaded_ahead(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path)
    loader = FrameLoader(dataset, [0, 1, 2], [0, 1, 2], workers=1, device="cuda")
    batches = list(device_prefetch(loader, "cuda"))
    for batch in batches:
        (frame,) = batch.frames
        assert frame.points.is_cuda
        np.testing.assert_array_equal(frame.points.cpu().numpy(), dataset[frame.index].points[:, :3])
