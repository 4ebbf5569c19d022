"""Node-style voxelization: shuffled arrival, first points win, front-to-back pillars, the overflow policy."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from centerpoint_deploy.errors import PointCloudError
from centerpoint_deploy.preprocess.autoware_voxelize import NodeVoxelizer, _arrival_rank
from centerpoint_deploy.preprocess.voxelize import voxelize

from .test_voxelize import TINY


def random_cloud(count: int, seed: int, spread: float = 12.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    xyz = (torch.rand(count, 3, generator=generator) * 2 - 1) * torch.tensor([spread, spread, 2.5])
    return torch.cat([xyz, torch.rand(count, 2, generator=generator)], dim=1)


def node_oracle(points: np.ndarray, cfg, capacity: int, offset: int):
    """Plain loops: the shuffle buffer, then per point in buffer order the atomic slot, then pillars by mask index."""
    rank = _arrival_rank(capacity).numpy()
    permutation = np.empty(capacity, np.int64)
    permutation[rank] = np.arange(capacity)
    lo, hi = np.float32(cfg.point_cloud_range[:3]), np.float32(cfg.point_cloud_range[3:])
    nx, ny, _ = cfg.grid_size
    mask: dict[int, list[np.ndarray]] = {}
    for i in range(capacity):
        src = permutation[(i + offset) % capacity]
        if src >= len(points):
            continue
        p = points[src]
        if any(p[a] < lo[a] or p[a] >= hi[a] for a in range(3)):
            continue
        ix = min(max(int(np.floor((p[0] - lo[0]) / np.float32(cfg.voxel_size[0]))), 0), nx - 1)
        iy = min(max(int(np.floor((p[1] - lo[1]) / np.float32(cfg.voxel_size[1]))), 0), ny - 1)
        slots = mask.setdefault((nx - 1 - ix) * ny + iy, [])
        if len(slots) < cfg.max_num_points:  # atomicAdd: the first to arrive win
            slots.append(p)
    pillars = []
    for index in sorted(mask)[: cfg.max_voxels]:  # front to back, then the cap
        ix, iy = nx - 1 - index // ny, index % ny
        pillars.append(((iy, ix), np.stack(mask[index])))
    return pillars


@pytest.mark.parametrize("seed", [0, 5])
def test_matches_the_loop_oracle_with_crowded_pillars_and_overflow(seed: int) -> None:
    cfg = dataclasses.replace(TINY, max_num_points=4, max_voxels=150)
    cloud = random_cloud(3000, seed, spread=4.0)  # ~400 pillars of ~7 points: both caps bite
    voxelizer = NodeVoxelizer(cfg, seed=seed, capacity=4096)
    (offset,) = NodeVoxelizer(cfg, seed=seed, capacity=4096).offsets(1)
    with pytest.warns(UserWarning, match="exceed max_voxels"):
        voxels = voxelizer([cloud])
    expected = node_oracle(cloud.numpy(), cfg, 4096, offset)
    assert voxels.num_voxels == len(expected) == 150
    assert voxels.coords[:, 2:].tolist() == [list(c) for c, _ in expected]
    for row, (_, pts) in enumerate(expected):
        n = int(voxels.num_points[row])
        assert n == len(pts)
        assert torch.equal(voxels.points[row, :n], torch.from_numpy(pts))
        assert not voxels.points[row, n:].any()


def test_same_pillars_as_mmdet3d_when_nothing_overflows() -> None:
    cloud = random_cloud(500, 1)
    node = NodeVoxelizer(TINY, seed=3)([cloud])
    ours = voxelize([cloud], TINY)
    assert node.num_voxels == ours.num_voxels
    as_set = lambda v: {tuple(c): sorted(map(tuple, v.points[i, : v.num_points[i]].tolist()))  # noqa: E731
                        for i, c in enumerate(v.coords.tolist())}
    assert as_set(node) == as_set(ours)
    x = node.coords[:, 3]
    assert (x[1:] <= x[:-1]).all()  # front (large x) first


def test_seeds_change_which_points_win_and_a_seed_repeats() -> None:
    cfg = dataclasses.replace(TINY, max_num_points=3)
    cloud = random_cloud(2000, 2, spread=3.0)
    first = NodeVoxelizer(cfg, seed=0)([cloud])
    again = NodeVoxelizer(cfg, seed=0)([cloud])
    other = NodeVoxelizer(cfg, seed=1)([cloud])
    assert torch.equal(first.points, again.points)
    assert torch.equal(first.coords, other.coords)  # same pillars, other points in them
    assert not torch.equal(first.points, other.points)


def test_points_past_the_capacity_are_lost_and_an_empty_cloud_raises() -> None:
    cloud = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0], [5.0, 5.0, 0.0, 0.0, 0.0]])
    voxels = NodeVoxelizer(TINY, capacity=1)([cloud])
    assert voxels.num_voxels == 1 and voxels.points[0, 0, 0].item() == 1.0
    with pytest.raises(PointCloudError, match="no point inside"):
        NodeVoxelizer(TINY)([torch.tensor([[50.0, 0.0, 0.0, 0.0, 0.0]])])


def test_padded_rows_and_batches() -> None:
    clouds = [random_cloud(300, 4), random_cloud(200, 5)]
    voxels, counts = NodeVoxelizer(TINY, seed=2).padded(clouds)
    assert voxels.points.shape[0] == 2 * TINY.max_voxels
    n0, n1 = counts.num_voxels.tolist()
    assert voxels.coords[:n0, 0].eq(0).all() and voxels.coords[TINY.max_voxels:TINY.max_voxels + n1, 0].eq(1).all()
    assert voxels.coords[n0:TINY.max_voxels].eq(-1).all() and voxels.num_points[n0:TINY.max_voxels].eq(0).all()
