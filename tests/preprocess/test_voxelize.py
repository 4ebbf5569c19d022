"""Hard voxelization: caps, ordering, boundaries, coords, against a loop oracle of mmcv."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from centerpoint_deploy.config.schema import VoxelizationConfig
from centerpoint_deploy.errors import PointCloudError
from centerpoint_deploy.preprocess.voxelize import voxelize

# tiny preset grid: x, y in [-12.8, 12.8) with 0.4 m cells (64 x 64), z in [-3, 5) one cell.
TINY = VoxelizationConfig(point_cloud_range=(-12.8, -12.8, -3.0, 12.8, 12.8, 5.0), voxel_size=(0.4, 0.4, 8.0),
                          max_num_points=32, max_voxels=4000)


def pts(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def mmcv_hard_voxelize_oracle(points: np.ndarray, cfg: VoxelizationConfig):
    """Point-by-point loop with mmcv ``hard_voxelize`` (deterministic) semantics."""
    lo = np.array(cfg.point_cloud_range[:3], np.float32)
    hi = np.array(cfg.point_cloud_range[3:], np.float32)
    size = np.array(cfg.voxel_size, np.float32)
    grid = cfg.grid_size
    index_of: dict[tuple[int, int, int], int] = {}
    voxels, counts, coords = [], [], []
    for p in points:
        c = np.floor((p[:3] - lo) / size)
        if any(not (lo[a] <= p[a] < hi[a]) or not (0 <= c[a] < grid[a]) for a in range(3)):
            continue
        key = (int(c[2]), int(c[1]), int(c[0]))
        if key not in index_of:
            if len(voxels) >= cfg.max_voxels:
                continue
            index_of[key] = len(voxels)
            voxels.append(np.zeros((cfg.max_num_points, points.shape[1]), np.float32))
            counts.append(0)
            coords.append(key)
        v = index_of[key]
        if counts[v] < cfg.max_num_points:
            voxels[v][counts[v]] = p
            counts[v] += 1
    return np.stack(voxels), np.array(counts, np.int32), np.array(coords, np.int32)


def test_coords_are_batch_z_y_x_and_int32() -> None:
    # x = -12.6 -> ix 0; y = 12.6 -> iy 63; second cloud: x = 0.1 -> ix 32, y = -12.7 -> iy 0.
    voxels = voxelize([pts([[-12.6, 12.6, 0.0, 1.0]]), pts([[0.1, -12.7, 4.9, 2.0]])], TINY)
    assert voxels.coords.dtype == torch.int32 and voxels.num_points.dtype == torch.int32
    assert voxels.coords.tolist() == [[0, 0, 63, 0], [1, 0, 0, 32]]
    assert voxels.batch_size == 2
    assert voxels.points.shape == (2, 32, 4)


def test_range_boundaries_min_kept_max_dropped() -> None:
    cloud = pts([
        [-12.8, 0.0, 0.0],  # x == min: kept, ix 0
        [12.8, 0.0, 0.0],  # x == max: dropped
        [0.0, 12.8, 0.0],  # y == max: dropped
        [0.0, 0.0, 5.0],  # z == max: dropped
        [0.0, -12.8, -3.0],  # y == min, z == min: kept
        [0.0, 0.0, -3.0001],  # below z min: dropped
    ])
    voxels = voxelize([cloud], TINY)
    assert voxels.coords.tolist() == [[0, 0, 32, 0], [0, 0, 0, 32]]
    assert voxels.num_points.tolist() == [1, 1]
    assert voxels.points[0, 0].tolist() == pytest.approx([-12.8, 0.0, 0.0])


def test_pillars_in_first_appearance_order_points_in_input_order() -> None:
    a, b, c = [0.1, 0.1, 0.0], [5.1, 5.1, 0.0], [-5.1, 2.1, 0.0]  # three distinct pillars
    cloud = pts([b + [0], a + [1], b + [2], c + [3], a + [4], b + [5]])
    voxels = voxelize([cloud], TINY)
    assert voxels.num_points.tolist() == [3, 2, 1]
    assert voxels.points[0, :3, 3].tolist() == [0, 2, 5]  # pillar b first, its points in input order
    assert voxels.points[1, :2, 3].tolist() == [1, 4]
    assert voxels.points[2, :1, 3].tolist() == [3]
    assert voxels.points[1, 2:].abs().sum() == 0  # unused slots are zero


def test_max_num_points_keeps_the_first_points() -> None:
    cfg = VoxelizationConfig(TINY.point_cloud_range, TINY.voxel_size, max_num_points=2, max_voxels=10)
    cloud = pts([[0.1, 0.1, 0.0, i] for i in range(5)])
    voxels = voxelize([cloud], cfg)
    assert voxels.num_points.tolist() == [2]
    assert voxels.points[0, :, 3].tolist() == [0, 1]


def test_max_voxels_keeps_first_pillars_and_warns() -> None:
    cfg = VoxelizationConfig(TINY.point_cloud_range, TINY.voxel_size, max_num_points=4, max_voxels=2)
    a, b, c = [0.1, 0.1, 0.0], [5.1, 5.1, 0.0], [-5.1, 2.1, 0.0]
    cloud = pts([a + [0], b + [1], c + [2], c + [3], a + [4]])  # pillar c: 2 points dropped
    with pytest.warns(UserWarning, match=r"3 pillars exceed max_voxels=2; dropped the last 1 pillars and their 2 points"):
        voxels = voxelize([cloud], cfg)
    assert voxels.num_voxels == 2
    assert voxels.coords[:, 2:].tolist() == [[32, 32], [44, 44]]
    assert voxels.points[0, :2, 3].tolist() == [0, 4]  # a keeps its late point (mmcv does too)


def test_no_point_in_range_raises() -> None:
    with pytest.raises(PointCloudError, match="point cloud 1 has no point inside point_cloud_range"):
        voxelize([pts([[0.0, 0.0, 0.0]]), pts([[50.0, 0.0, 0.0], [0.0, 0.0, 9.0]])], TINY)


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_mmcv_loop_oracle_on_random_clouds(seed: int) -> None:
    cfg = VoxelizationConfig(TINY.point_cloud_range, TINY.voxel_size, max_num_points=5, max_voxels=150)
    rng = np.random.default_rng(seed)
    # Clustered points (many per pillar, beyond max_num_points) plus some out of range.
    centres = rng.uniform(-14, 14, size=(200, 2))
    xy = centres[rng.integers(0, 200, 3000)] + rng.normal(0, 0.3, size=(3000, 2))
    cloud = np.concatenate([xy, rng.uniform(-4, 6, (3000, 1)), rng.uniform(0, 1, (3000, 2))], axis=1).astype(np.float32)
    want_points, want_counts, want_coords = mmcv_hard_voxelize_oracle(cloud, cfg)
    with pytest.warns(UserWarning):
        voxels = voxelize([torch.from_numpy(cloud)], cfg)
    assert voxels.coords[:, 1:].numpy().tolist() == want_coords.tolist()
    assert voxels.num_points.numpy().tolist() == want_counts.tolist()
    assert torch.equal(voxels.points, torch.from_numpy(want_points))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_and_cuda_identical() -> None:
    rng = np.random.default_rng(3)
    cloud = torch.from_numpy(rng.uniform(-13, 13, (20000, 5)).astype(np.float32))
    cloud[:, 2] = cloud[:, 2] / 4
    cpu = voxelize([cloud, cloud[:5000]], TINY)
    gpu = voxelize([cloud.cuda(), cloud[:5000].cuda()], TINY)
    for name in ("points", "num_points", "coords"):
        assert torch.equal(getattr(cpu, name), getattr(gpu, name).cpu()), name
    assert math.prod(cpu.points.shape[1:]) == 32 * 5


def test_fewer_padded_rows_keep_the_first_pillars_and_count_them_all() -> None:
    from centerpoint_deploy.preprocess.voxelize import voxelize_padded

    rng = np.random.default_rng(4)
    clouds = [torch.from_numpy(rng.uniform(-13, 13, (n, 5)).astype(np.float32)) for n in (3000, 900)]
    full, counts = voxelize_padded(clouds, TINY)
    capped, capped_counts = voxelize_padded(clouds, TINY, rows=600)
    assert torch.equal(capped_counts.table, counts.table) and counts.num_voxels.tolist()[0] > 600
    rows = TINY.max_voxels
    for b in range(2):   # each cloud's first 600 pillars, as in the full rows
        for name in ("points", "num_points", "coords"):
            assert torch.equal(getattr(capped, name)[b * 600:(b + 1) * 600], getattr(full, name)[b * rows:b * rows + 600])
