"""Hard pillar voxelization with mmcv's deterministic semantics, vectorized in torch.

mmcv's ``hard_voxelize`` walks the points in input order: a point outside the grid is
skipped; a point in a new pillar opens it unless ``max_voxels`` pillars are open already
(then the point is dropped); a point is stored in its pillar while the pillar holds fewer
than ``max_num_points``. Hence pillars are ordered by the first point that lands in them,
each keeps its first points in input order, and the pillars kept are the first-appearing
ones. This module computes the same result with sorts and scatters (no loop over points), so
CPU and CUDA give identical tensors.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from centerpoint_deploy.config.schema import VoxelizationConfig
from centerpoint_deploy.errors import PointCloudError
from centerpoint_deploy.structures import Voxels


def voxel_indices(xyz: Tensor, cfg: VoxelizationConfig) -> tuple[Tensor, Tensor]:
    """Grid cell of each point and whether it lies inside the grid.

    A point is inside when ``min <= p < max`` on every axis and its cell
    ``floor((p - min) / voxel_size)`` (float32, as mmcv computes it) lies in ``[0, grid)``.

    Args:
        xyz: ``Tensor[N, 3]`` float32 point coordinates (m).

    Returns:
        ``(cells, inside)``: ``Tensor[N, 3]`` int64 ``(ix, iy, iz)`` (meaningful where inside),
        ``Tensor[N]`` bool.
    """
    lower = torch.tensor(cfg.point_cloud_range[:3], dtype=torch.float32, device=xyz.device)
    upper = torch.tensor(cfg.point_cloud_range[3:], dtype=torch.float32, device=xyz.device)
    size = torch.tensor(cfg.voxel_size, dtype=torch.float32, device=xyz.device)
    grid = torch.tensor(cfg.grid_size, dtype=torch.float32, device=xyz.device)
    cells = torch.floor((xyz - lower) / size)  # [N, 3]
    inside = ((xyz >= lower) & (xyz < upper) & (cells >= 0) & (cells < grid)).all(dim=1)
    cells = torch.where(inside.unsqueeze(1), cells, torch.zeros_like(cells))
    return cells.to(torch.int64), inside


def voxelize(points: list[Tensor], cfg: VoxelizationConfig) -> Voxels:
    """Hard-voxelize a batch of point clouds into pillars.

    Args:
        points: one ``Tensor[N_i, D]`` float32 per cloud, columns x, y, z (m), then features;
            all on one device.
        cfg: grid and limits.

    Returns:
        :class:`Voxels` with ``points [V, max_num_points, D]`` (zero in unused slots),
        ``num_points [V]`` int32, ``coords [V, 4]`` int32 ``(batch, z, y, x)``; the pillars of
        cloud 0 first, each cloud's pillars in order of first appearance.

    Raises:
        PointCloudError: a cloud has no point inside ``point_cloud_range``.

    Warns:
        UserWarning: a cloud has more than ``max_voxels`` pillars (the later ones are dropped,
            as mmcv does; the message says how many pillars and points).
    """
    voxel_points, num_points, coords = [], [], []
    for index, cloud in enumerate(points):
        cloud_points, cloud_counts, cloud_coords = _voxelize_one(cloud, cfg, index)
        voxel_points.append(cloud_points)
        num_points.append(cloud_counts)
        coords.append(torch.nn.functional.pad(cloud_coords, (1, 0), value=index))  # prepend batch index
    return Voxels(torch.cat(voxel_points), torch.cat(num_points), torch.cat(coords), batch_size=len(points))


def _voxelize_one(points: Tensor, cfg: VoxelizationConfig, index: int) -> tuple[Tensor, Tensor, Tensor]:
    """One cloud ``Tensor[N, D]`` -> ``(points [V, P, D], num_points [V] int32, coords [V, 3] int32 (z, y, x))``."""
    nx, ny, _ = cfg.grid_size
    cells, inside = voxel_indices(points[:, :3], cfg)
    points, cells = points[inside], cells[inside]  # [M, D], [M, 3], input order kept
    num_kept = points.shape[0]
    if num_kept == 0:
        raise PointCloudError(f"point cloud {index} has no point inside point_cloud_range "
                              f"{list(cfg.point_cloud_range)} (it had {int(inside.numel())} points)")
    device = points.device
    linear = (cells[:, 2] * ny + cells[:, 1]) * nx + cells[:, 0]  # [M] cell id
    unique_ids, cell_of_point = torch.unique(linear, return_inverse=True)  # ids sorted, [U], [M]
    num_cells = unique_ids.shape[0]
    point_index = torch.arange(num_kept, device=device)
    first_point = torch.full((num_cells,), num_kept, dtype=torch.int64, device=device).scatter_reduce(
        0, cell_of_point, point_index, reduce="amin", include_self=True
    )  # [U] first point of each cell
    order = torch.argsort(first_point)  # cells by first appearance
    rank_of_cell = torch.empty_like(order)
    rank_of_cell[order] = torch.arange(num_cells, device=device)
    voxel_of_point = rank_of_cell[cell_of_point]  # [M] voxel index in output order

    counts = torch.bincount(voxel_of_point, minlength=num_cells)  # [U] points per voxel
    segment_start = torch.cumsum(counts, 0) - counts
    by_voxel = torch.argsort(voxel_of_point, stable=True)  # input order within each voxel
    slot = torch.empty_like(voxel_of_point)
    slot[by_voxel] = point_index - segment_start[voxel_of_point[by_voxel]]  # [M] rank inside voxel

    num_voxels = min(num_cells, cfg.max_voxels)
    if num_cells > num_voxels:
        dropped_points = int(counts[num_voxels:].sum())
        warnings.warn(
            f"point cloud {index}: {num_cells} pillars exceed max_voxels={cfg.max_voxels}; "
            f"dropped the last {num_cells - num_voxels} pillars and their {dropped_points} points",
            stacklevel=3,
        )
    stored = (voxel_of_point < num_voxels) & (slot < cfg.max_num_points)
    voxels = points.new_zeros((num_voxels, cfg.max_num_points, points.shape[1]))
    voxels[voxel_of_point[stored], slot[stored]] = points[stored]
    num_points = counts[:num_voxels].clamp(max=cfg.max_num_points).to(torch.int32)
    first_cells = cells[first_point[order[:num_voxels]]]  # [V, 3] (ix, iy, iz)
    coords = first_cells.flip(1).to(torch.int32)  # (z, y, x)
    return voxels, num_points, coords
