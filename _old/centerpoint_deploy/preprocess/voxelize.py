"""Hard pillar voxelization with mmcv's deterministic semantics, vectorized in torch.

mmcv's ``hard_voxelize`` walks the points in input order: a point outside the grid is
skipped; a point in a new pillar opens it unless ``max_voxels`` pillars are open already
(then the point is dropped); a point is stored in its pillar while the pillar holds fewer
than ``max_num_points``. Hence pillars are ordered by the first point that lands in them,
each keeps its first points in input order, and the pillars kept are the first-appearing
ones.

:func:`voxelize_padded` computes the same result with fixed-size tensors and no host
synchronisation: the first point of each BEV cell comes from a scatter-min over the dense
cell grid, a pillar's rank is the running count of first points, and a stable sort by rank
lists every pillar's points in input order; each output slot gathers its point from that
list (no scatter with colliding writes, which serialise on a GPU when many points lie
outside the grid, e.g. the padding rows of a fixed-size point buffer). Its output has exactly ``max_voxels`` rows per cloud (padding at
the end), so the whole pre-processing can stay on the GPU. :func:`voxelize` shares that
assignment, reads the pillar counts (one synchronisation), checks and warns, and gathers
exactly the pillars found. CPU and CUDA give identical tensors.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from centerpoint_deploy.config.schema import VoxelizationConfig
from centerpoint_deploy.errors import PointCloudError
from centerpoint_deploy.device import device_constant
from centerpoint_deploy.structures import Voxels

#: Spare cells of the first-point grid that points outside the grid spread over (fewer colliding atomics).
_SPARE_CELLS = 1024


@dataclass
class VoxelCounts:
    """Per-cloud sizes of a padded voxelization, on the device (reading them synchronises).

    Attributes:
        table: ``Tensor[B, 3]`` int64, per cloud: pillars kept (``min(pillars, max_voxels)``),
            occupied pillars before the ``max_voxels`` cap, in-range points of the pillars
            beyond the cap (dropped).
    """

    table: Tensor

    @property
    def num_voxels(self) -> Tensor:
        return self.table[:, 0]

    @property
    def num_pillars(self) -> Tensor:
        return self.table[:, 1]

    @property
    def num_dropped_points(self) -> Tensor:
        return self.table[:, 2]


def voxel_indices(xyz: Tensor, cfg: VoxelizationConfig) -> tuple[Tensor, Tensor]:
    """Grid cell of each point and whether it lies inside the grid.

    A point is inside when ``min <= p < max`` on every axis and its cell
    ``floor((p - min) / voxel_size)`` (float32, as mmcv computes it) lies in ``[0, grid)``.
    Points holding NaN are outside.

    Args:
        xyz: ``Tensor[N, 3]`` float32 point coordinates (m).

    Returns:
        ``(cells, inside)``: ``Tensor[N, 3]`` int64 ``(ix, iy, iz)`` (zero where outside),
        ``Tensor[N]`` bool.
    """
    lower = device_constant(cfg.point_cloud_range[:3], xyz.device)
    upper = device_constant(cfg.point_cloud_range[3:], xyz.device)
    size = device_constant(cfg.voxel_size, xyz.device)
    grid = device_constant(tuple(float(g) for g in cfg.grid_size), xyz.device)
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
    assignments = [_assign_pillars(cloud, cfg) for cloud in points]
    table = torch.stack([a.sizes for a in assignments]).tolist()  # the one synchronisation
    check_voxel_counts(table, cfg, [int(cloud.shape[0]) for cloud in points], stacklevel=3)
    return _gather_batch(points, assignments, [row[0] for row in table], cfg)


def voxelize_padded(points: list[Tensor], cfg: VoxelizationConfig) -> tuple[Voxels, VoxelCounts]:
    """:func:`voxelize` with fixed shapes and no host synchronisation.

    Returns:
        ``(voxels, counts)``: :class:`Voxels` with exactly ``max_voxels`` rows per cloud
        (``points [B * max_voxels, P, D]``); cloud ``b`` owns rows ``[b * max_voxels,
        b * max_voxels + counts.num_voxels[b])`` in first-appearance order, the rest are
        padding with zero points, ``num_points`` 0 and ``coords`` ``(-1, -1, -1, -1)``.
        Nothing is checked: a cloud without pillars yields only padding, and an overflow
        shows in ``counts`` (see :func:`check_voxel_counts`).
    """
    assignments = [_assign_pillars(cloud, cfg) for cloud in points]
    voxels = _gather_batch(points, assignments, [cfg.max_voxels] * len(points), cfg)
    return voxels, VoxelCounts(torch.stack([a.sizes for a in assignments]))


def check_voxel_counts(table: list[list[int]], cfg: VoxelizationConfig, num_points: list[int],
                       stacklevel: int = 2) -> None:
    """Raise for a cloud without pillars, warn for one over ``max_voxels``.

    Args:
        table: ``VoxelCounts.table.tolist()``.
        num_points: points per cloud (for the message).
    """
    for index, (_, num_pillars, num_dropped) in enumerate(table):
        if num_pillars == 0:
            raise PointCloudError(f"point cloud {index} has no point inside point_cloud_range "
                                  f"{list(cfg.point_cloud_range)} (it had {num_points[index]} points)")
        if num_pillars > cfg.max_voxels:
            warnings.warn(
                f"point cloud {index}: {num_pillars} pillars exceed max_voxels={cfg.max_voxels}; "
                f"dropped the last {num_pillars - cfg.max_voxels} pillars and their {num_dropped} points",
                stacklevel=stacklevel + 1,
            )


@dataclass
class _PillarAssignment:
    """Where the points of one cloud go.

    ``order``: ``Tensor[N]`` int64, point indices sorted by output pillar (stable, so each
    pillar's points are in input order; points outside the grid or beyond the cap come last);
    ``starts``, ``counts``: ``Tensor[max_voxels]`` int64, position in ``order`` of each pillar's
    first point and its number of points (0: pillar not opened); ``cells``: ``Tensor[N, 3]``
    int64 ``(ix, iy, iz)``; ``sizes``: ``Tensor[3]`` as a row of :attr:`VoxelCounts.table`.
    """

    order: Tensor
    starts: Tensor
    counts: Tensor
    cells: Tensor
    sizes: Tensor


def _assign_pillars(points: Tensor, cfg: VoxelizationConfig) -> _PillarAssignment:
    """Pillar of each point of ``points [N, D]``, with fixed shapes (no host sync)."""
    nx, ny, nz = cfg.grid_size
    count, device = points.shape[0], points.device
    cells, inside = voxel_indices(points[:, :3], cfg)
    num_cells = nx * ny * nz
    point_index = torch.arange(count, device=device)
    spare = num_cells + point_index % _SPARE_CELLS  # [N] where points outside the grid go
    linear = torch.where(inside, (cells[:, 2] * ny + cells[:, 1]) * nx + cells[:, 0], spare)  # [N]
    first_point = torch.full((num_cells + _SPARE_CELLS,), count, dtype=torch.int64, device=device).scatter_reduce(
        0, linear, point_index, reduce="amin", include_self=True)  # [cells + spare] first point of each cell
    first_of_mine = first_point[linear]  # [N]
    is_first = (first_of_mine == point_index) & inside  # [N] the point opens a pillar
    opened = torch.cumsum(is_first.to(torch.int64), dim=0)  # [N] pillars opened up to each point
    pillar = opened[first_of_mine] - 1  # [N] rank of the point's pillar by first appearance
    kept = inside & (pillar < cfg.max_voxels)
    voxel = torch.where(kept, pillar, cfg.max_voxels).to(torch.int32)  # [N]; 32-bit keys sort in half the passes

    order = torch.argsort(voxel, stable=True)  # input order within each pillar
    targets = torch.arange(cfg.max_voxels + 1, dtype=torch.int32, device=device)
    bounds = torch.searchsorted(voxel[order], targets).to(torch.int64)  # [max_voxels + 1]
    num_pillars = is_first.sum()
    sizes = torch.stack([num_pillars.clamp(max=cfg.max_voxels), num_pillars, (inside & ~kept).sum()])
    return _PillarAssignment(order, bounds[:-1], bounds[1:] - bounds[:-1], cells, sizes)


def _gather_batch(points: list[Tensor], assignments: list[_PillarAssignment], rows: list[int],
                  cfg: VoxelizationConfig) -> Voxels:
    """Concatenate :func:`_gather_one` of every cloud, with the batch index prepended to coords."""
    parts = [_gather_one(cloud, a, n, cfg) for cloud, a, n in zip(points, assignments, rows)]
    coords = [torch.cat([torch.where(c[:, :1] >= 0, index, -1).to(torch.int32), c], dim=1)
              for index, (_, _, c) in enumerate(parts)]
    if len(parts) == 1:
        return Voxels(parts[0][0], parts[0][1], coords[0], batch_size=1)
    return Voxels(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), torch.cat(coords),
                  batch_size=len(points))


def _gather_one(points: Tensor, assignment: _PillarAssignment, rows: int,
                cfg: VoxelizationConfig) -> tuple[Tensor, Tensor, Tensor]:
    """``rows`` pillars of one cloud: ``points [rows, P, D]``, ``num_points [rows]`` int32 and
    ``coords [rows, 3]`` int32 ``(z, y, x)``; rows past the cloud's pillars are zero / 0 / -1."""
    last = points.shape[0] - 1
    starts, counts = assignment.starts[:rows], assignment.counts[:rows]  # [rows]
    slots = torch.arange(cfg.max_num_points, device=points.device)
    filled = slots < counts.unsqueeze(1)  # [rows, P]
    source = assignment.order[(starts.unsqueeze(1) + slots).clamp_(max=last)]  # [rows, P] point of each slot
    voxels = torch.where(filled.unsqueeze(2), points[source], 0.0)  # [rows, P, D]
    opener = assignment.order[starts.clamp(max=last)]  # [rows] first point of each pillar
    coords = torch.where(counts.unsqueeze(1) > 0, assignment.cells[opener].flip(1), -1)
    return voxels, counts.clamp(max=cfg.max_num_points).to(torch.int32), coords.to(torch.int32)
