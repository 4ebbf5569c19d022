from dataclasses import dataclass

import numpy as np
import pytest
import torch

from centerpoint_deploy.data.device_merge import MergeGraphs, candidate_rows, merge_on_device, merge_rows, merge_table
from centerpoint_deploy.data.geometry import make_transform, yaw_to_quaternion
from centerpoint_deploy.data.sweeps import (SweepOptions, merge_parts, merge_sources, move_xyz, raw_layout,
                                            select_rows, sweep_to_key_transform)
from centerpoint_deploy.errors import DatasetError

KEY = np.array([[5.0, 0.0, 0.0, 10.0, 9.0]], dtype=np.float32)  # column 4 holds junk on disk


@dataclass(frozen=True)
class Sweep:
    """A previous sweep: its points (own sensor frame), its transform into the key frame, its time lag."""

    points: np.ndarray
    sweep2key: np.ndarray
    time_lag: float


def merge_sweeps(key_points: np.ndarray, sweeps: list[Sweep], options: SweepOptions) -> np.ndarray:
    """The key frame and its sweeps merged as a dataset merges them (its parts, then the host merge)."""
    parts = merge_parts([(s.sweep2key, s.time_lag) for s in sweeps], options)
    return merge_sources([key_points, *(s.points for s in sweeps)], parts, options.remove_close_radius)


def test_sweep_moved_into_key_frame_with_time_lag():
    # ego moved 2 m along +x between sweep and key; identity calibration
    sweep2key = sweep_to_key_transform(np.eye(4), make_transform([1, 0, 0, 0], [0, 0, 0]),
                                       np.eye(4), make_transform([1, 0, 0, 0], [2, 0, 0]))
    sweep_pts = np.array([[7.0, 1.0, 0.5, 20.0, 0.0], [0.5, 0.5, 0.0, 1.0, 0.0]], dtype=np.float32)
    out = merge_sweeps(KEY, [Sweep(sweep_pts, sweep2key, 0.1)], SweepOptions(sweeps_num=1))
    # second sweep point is within the 1 m "remove close" square and is dropped
    np.testing.assert_allclose(out, [[5, 0, 0, 10, 0], [5, 1, 0.5, 20, 0.1]], atol=1e-6)


def test_rotated_calibration_round_trip():
    lidar2ego = make_transform(yaw_to_quaternion(np.pi / 2), [1.0, 0.0, 2.0])
    same_pose = make_transform([1, 0, 0, 0], [100.0, 50.0, 0.0])
    np.testing.assert_allclose(sweep_to_key_transform(lidar2ego, same_pose, lidar2ego, same_pose), np.eye(4), atol=1e-9)


def test_padding_and_zero_sweeps():
    padded = merge_sweeps(KEY, [], SweepOptions(sweeps_num=2))
    np.testing.assert_array_equal(padded, np.repeat([[5, 0, 0, 10, 0]], 3, axis=0))
    assert merge_sweeps(KEY, [], SweepOptions(sweeps_num=2, pad_empty_sweeps=False)).shape == (1, 5)
    assert merge_sweeps(KEY, [Sweep(KEY, np.eye(4), 0.1)], SweepOptions(sweeps_num=0)).shape == (1, 5)


def test_narrow_points_get_a_time_lag_column():
    out = merge_sweeps(np.ones((2, 4), np.float32), [], SweepOptions(sweeps_num=0))
    np.testing.assert_array_equal(out, [[1, 1, 1, 1, 0], [1, 1, 1, 1, 0]])


def test_negative_sweeps_num_refused():
    with pytest.raises(DatasetError, match="sweeps_num = -1"):
        SweepOptions(sweeps_num=-1)


def _merged_part_by_part(key: np.ndarray, sweeps: list[Sweep], radius: float) -> np.ndarray:
    """The merge written plainly: each part widened on its own, moved, then concatenated."""
    def widened(points: np.ndarray, lag: float) -> np.ndarray:
        out = np.zeros((len(points), 5), np.float32)
        out[:, : points.shape[1]] = points
        out[:, 4] = lag
        return out

    parts = [widened(key, 0.0)]
    for sweep in sweeps:
        points = sweep.points[~((np.abs(sweep.points[:, 0]) < radius) & (np.abs(sweep.points[:, 1]) < radius))]
        moved = widened(points, sweep.time_lag)
        moved[:, :3] = points[:, :3].astype(np.float64) @ sweep.sweep2key[:3, :3].T + sweep.sweep2key[:3, 3]
        parts.append(moved)
    return np.concatenate(parts)


def test_merge_writes_what_the_part_by_part_merge_gives_bit_for_bit():
    rng = np.random.default_rng(0)
    key = (rng.standard_normal((500, 5)) * 3).astype(np.float32)
    sweeps = [Sweep((rng.standard_normal((n, 5)) * 3).astype(np.float32),
                    make_transform(yaw_to_quaternion(0.3 * k), [k, -k, 0.1]), 0.1 * (k + 1))
              for k, n in enumerate((400, 0, 700))]
    out = merge_sweeps(key, sweeps, SweepOptions(sweeps_num=3))
    assert out.dtype == np.float32 and np.array_equal(out, _merged_part_by_part(key, sweeps, 1.0))
    assert len(out) < 1600  # the close points were dropped


def test_select_rows_is_a_row_mask():
    rng = np.random.default_rng(1)
    points = rng.standard_normal((50, 7)).astype(np.float32)
    keep = rng.random(50) < 0.5
    assert np.array_equal(select_rows(points, keep), points[keep])
    assert np.array_equal(select_rows(points[:, 1:4], keep), points[keep, 1:4])  # not contiguous
    assert select_rows(points, np.zeros(50, bool)).shape == (0, 7)


def _sources(rng: np.random.Generator, sizes: tuple[int, ...], width: int) -> list[np.ndarray]:
    """Clouds of ``sizes`` points, tens of metres wide, a share of them in the close square."""
    clouds = []
    for size in sizes:
        points = (rng.standard_normal((size, width)) * 30).astype(np.float32)
        points[: size // 5, :2] *= 0.02
        clouds.append(points)
    return clouds


@pytest.mark.parametrize("width, options, sweeps", [
    (5, SweepOptions(sweeps_num=3), 3),
    (5, SweepOptions(sweeps_num=2), 4),                           # fewer merged than there are
    (4, SweepOptions(sweeps_num=2), 2),                           # a time-lag column added
    (6, SweepOptions(sweeps_num=2, remove_close_radius=None), 2),
    (5, SweepOptions(sweeps_num=3), 0),                           # copies of the key frame
    (5, SweepOptions(sweeps_num=0), 2),                           # the key frame alone
    (4, SweepOptions(sweeps_num=0), 0),
    (6, SweepOptions(sweeps_num=0), 1),
])
def test_the_device_merge_equals_the_host_merge_bit_for_bit(width: int, options: SweepOptions, sweeps: int) -> None:
    rng = np.random.default_rng(width + sweeps)
    sources = _sources(rng, (700, 500, 300, 650, 40)[: 1 + sweeps], width)
    motions = [(make_transform(yaw_to_quaternion(0.7 * k - 1), [30.0 * k, -5.5 * k, 0.3]), 0.1 * k)
               for k in range(1, 1 + sweeps)]
    parts = merge_parts(motions, options)
    host = merge_sources(sources, parts, options.remove_close_radius)
    layout = raw_layout(sources, parts, options.remove_close_radius)
    raw = np.concatenate(sources)
    read = torch.from_numpy(raw.copy())
    device = merge_on_device(read, layout)
    assert np.array_equal(read.numpy(), raw)  # the sources as read are left as they are
    assert layout.rows == len(host) and layout.raw_rows == sum(map(len, sources))
    assert device.dtype == torch.float32 and device.shape == host.shape
    assert np.array_equal(device.numpy().view(np.int32), host.view(np.int32))  # every bit, zeros' signs too
    # the fixed sizes a merge graph replays: rows past the sources hold anything, more candidates and rows
    padded = torch.cat([read, torch.full((300, width), float("nan"))])
    table = torch.from_numpy(merge_table(layout))
    moves = any(part.sweep2key is not None for part in parts)
    fixed = merge_rows(padded, table, candidate_rows(layout) + 200, layout.rows + 100, layout.radius, moves)
    assert fixed.shape == (layout.rows + 100, host.shape[1])
    assert np.array_equal(fixed[: layout.rows].numpy().view(np.int32), host.view(np.int32))


def test_moved_points_are_the_transform():
    rng = np.random.default_rng(3)
    xyz = (rng.standard_normal((1000, 3)) * 50).astype(np.float32)
    sweep2key = make_transform(yaw_to_quaternion(2.1), [100.0, -40.0, 1.5])
    expected = xyz.astype(np.float64) @ sweep2key[:3, :3].T + sweep2key[:3, 3]
    moved = np.empty_like(xyz)
    move_xyz(xyz, sweep2key, moved)
    np.testing.assert_allclose(moved, expected, rtol=1e-7, atol=0)  # float32 of the product: within its rounding


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_merge_graphs_replay_the_device_merge_bit_for_bit() -> None:
    """Frames of two sizes and part counts through one set of graphs (each size captured once), columns selected."""
    rng = np.random.default_rng(11)
    options = SweepOptions(sweeps_num=2)
    merges = MergeGraphs(torch.device("cuda"), [0, 1, 2, 4])
    stream = torch.cuda.Stream()
    for sizes in [(7000, 6500, 6000), (7100, 6400, 5900), (20000, 19000), (6900, 6600, 6100)]:
        sources = _sources(rng, sizes, 5)
        motions = [(make_transform(yaw_to_quaternion(0.3 * k), [3.0 * k, -1.0, 0.2]), 0.1 * k)
                   for k in range(1, len(sizes))]
        parts = merge_parts(motions, options)
        layout = raw_layout(sources, parts, options.remove_close_radius)
        raw = torch.from_numpy(np.concatenate(sources)).pin_memory()
        with torch.cuda.stream(stream):
            merged = merges(raw, layout)
        stream.synchronize()
        host = merge_sources(sources, parts, options.remove_close_radius)[:, [0, 1, 2, 4]]
        assert np.array_equal(merged.cpu().numpy().view(np.int32), host.view(np.int32)), sizes
    assert len(merges._graphs) == 2  # the first, second and fourth frames share a graph
