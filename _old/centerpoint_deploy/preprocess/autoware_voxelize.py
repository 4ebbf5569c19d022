"""Pillar voxelization as the Autoware node does it (``voxelization.mode: autoware``), emulated.

The node (``lib/centerpoint_trt.cpp`` ``initPtr``/``preprocess``, ``lib/preprocess/preprocess_kernel.cu``):

1. shuffles the points: slot ``i`` of a ``cloud_capacity``-long buffer takes point
   ``indices[(i + offset) % capacity]`` (or nothing when that index is past the cloud), where
   ``indices`` is one fixed permutation (``std::shuffle`` with seed 0, made once) and
   ``offset = std::rand() % capacity`` is drawn per frame from a time-seeded generator (#8814);
2. fills each pillar's 32 slots by ``atomicAdd``: the first points to arrive win, in the
   shuffled order, and the rest of the pillar's points are dropped;
3. emits pillars front to back (#9608): by ``(nx - 1 - ix) * ny + iy``, largest x first; past
   ``max_voxel_size`` the rest are dropped;
4. keeps a point when ``min <= p < max`` on every axis and clamps its cell into the grid.

The emulation: the fixed permutation is ``torch.randperm`` with seed 0 (the node's
``std::shuffle`` permutation is implementation-defined and cannot be reproduced bit for bit;
any fixed permutation has the same statistics), the per-frame offsets come from a generator
seeded with ``seed``, and points arrive in shuffled order (the GPU's atomics give roughly that
order; their exact interleaving is not emulated). Same ``seed`` and call order, same pillars:
runs over a few seeds show how much the node's non-determinism moves boxes and mAP.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from centerpoint_deploy.config.schema import VoxelizationConfig
from centerpoint_deploy.errors import ConfigError
from centerpoint_deploy.postprocess.node_params import DEFAULT_CLOUD_CAPACITY
from centerpoint_deploy.preprocess.voxelize import VoxelCounts, check_voxel_counts
from centerpoint_deploy.structures import Voxels


@lru_cache(maxsize=4)
def _arrival_rank(capacity: int) -> Tensor:
    """``Tensor[capacity]`` int64: the slot of the fixed permutation that holds each point index (CPU)."""
    permutation = torch.randperm(capacity, generator=torch.Generator().manual_seed(0))
    rank = torch.empty(capacity, dtype=torch.int64)
    rank[permutation] = torch.arange(capacity)
    return rank


class NodeVoxelizer:
    """The node's voxelization with a reproducible shuffle.

    Args:
        cfg: grid and limits (``max_num_points`` slots per pillar, ``max_voxels`` pillars).
        seed: seeds the per-frame shuffle offsets; each call draws one offset per cloud.
        capacity: the node's ``cloud_capacity`` (points per frame it holds; later points are lost).
    """

    def __init__(self, cfg: VoxelizationConfig, seed: int = 0, capacity: int = DEFAULT_CLOUD_CAPACITY) -> None:
        if capacity < 1:
            raise ConfigError(f"cloud_capacity = {capacity} is invalid: must be >= 1")
        self.cfg = cfg
        self.seed = seed
        self.capacity = capacity
        self._generator = torch.Generator().manual_seed(seed)
        self._ranks: dict[torch.device, Tensor] = {}

    def offsets(self, count: int) -> list[int]:
        """The next ``count`` per-frame offsets (``std::rand() % capacity`` in the node)."""
        return torch.randint(0, self.capacity, (count,), generator=self._generator).tolist()

    def __call__(self, points: list[Tensor]) -> Voxels:
        """Voxelize a batch (see :func:`voxelize_node`), drawing one offset per cloud.

        Raises/warns as :func:`~centerpoint_deploy.preprocess.voxelize.voxelize` (no pillar: error;
        over ``max_voxels``: warning).
        """
        voxels, counts = self.padded(points)
        table = counts.table.tolist()  # the one synchronisation
        check_voxel_counts(table, self.cfg, [int(cloud.shape[0]) for cloud in points], stacklevel=3)
        rows = self.cfg.max_voxels
        keep = torch.cat([torch.arange(b * rows, b * rows + n[0], device=voxels.points.device)
                          for b, n in enumerate(table)])
        return Voxels(voxels.points[keep], voxels.num_points[keep], voxels.coords[keep], voxels.batch_size)

    def padded(self, points: list[Tensor]) -> tuple[Voxels, VoxelCounts]:
        """Fixed shapes, no host synchronisation: ``max_voxels`` rows per cloud, as ``voxelize_padded``."""
        offsets = self.offsets(len(points))
        parts = [voxelize_node(cloud, self.cfg, self._rank(cloud.device), offset, index)
                 for index, (cloud, offset) in enumerate(zip(points, offsets))]
        voxels = Voxels(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]),
                        torch.cat([p[2] for p in parts]), batch_size=len(points))
        return voxels, VoxelCounts(torch.stack([p[3] for p in parts]))

    def _rank(self, device: torch.device) -> Tensor:
        if device not in self._ranks:
            self._ranks[device] = _arrival_rank(self.capacity).to(device)
        return self._ranks[device]


def voxelize_node(points: Tensor, cfg: VoxelizationConfig, arrival_rank: Tensor, offset: int,
                  batch_index: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One cloud, node style, in fixed shapes.

    Args:
        points: ``Tensor[N, D]`` float32, columns x, y, z (m), then features.
        arrival_rank: ``Tensor[capacity]`` int64, the fixed permutation's slot of each point index.
        offset: the frame's shuffle offset in ``[0, capacity)``.
        batch_index: written into ``coords[:, 0]``.

    Returns:
        ``(points [max_voxels, P, D], num_points [max_voxels] int32, coords [max_voxels, 4] int32
        (batch, z, y, x), counts [3] int64)``: pillars front to back, each with its first ``P``
        points in arrival order; rows past the pillars are zero / 0 / -1. ``counts`` is a row
        of :class:`~centerpoint_deploy.preprocess.voxelize.VoxelCounts`.
    """
    nx, ny, _ = cfg.grid_size
    slots, rows = cfg.max_num_points, cfg.max_voxels
    count, device = points.shape[0], points.device
    capacity = arrival_rank.shape[0]
    lower = torch.tensor(cfg.point_cloud_range[:3], dtype=torch.float32, device=device)
    upper = torch.tensor(cfg.point_cloud_range[3:], dtype=torch.float32, device=device)
    size = torch.tensor(cfg.voxel_size[:2], dtype=torch.float32, device=device)
    xyz = points[:, :3]
    inside = ((xyz >= lower) & (xyz < upper)).all(dim=1)
    cells = torch.floor((xyz[:, :2] - lower[:2]) / size)
    cells = torch.where(inside[:, None], cells, torch.zeros_like(cells)).to(torch.int64)
    ix = cells[:, 0].clamp(0, nx - 1)
    iy = cells[:, 1].clamp(0, ny - 1)

    index = torch.arange(count, device=device)
    arrives = index < capacity  # points past the node's buffer never enter it
    slot_of_point = arrival_rank[index.clamp(max=capacity - 1)]
    arrival = torch.remainder(slot_of_point - offset, capacity)  # when each point reaches the kernel
    pillar_key = (nx - 1 - ix) * ny + iy  # the node's mask index: front (large x) first
    valid = inside & arrives
    never = (nx * ny + 1) * capacity
    order = torch.argsort(torch.where(valid, pillar_key * capacity + arrival, never))  # keys are unique
    key = pillar_key[order]
    live = valid[order]
    position = torch.arange(count, device=device)
    first = live & torch.cat([torch.ones(1, dtype=torch.bool, device=device), key[1:] != key[:-1]])
    pillar = torch.cumsum(first.to(torch.int64), dim=0) - 1  # rank of each sorted point's pillar
    start = torch.cummax(torch.where(first, position, torch.zeros_like(position)), dim=0).values
    slot = position - start
    kept = live & (slot < slots) & (pillar < rows)

    target_row = torch.where(kept, pillar, rows)  # row `rows` is a dump for dropped points
    target_slot = torch.where(kept, slot, 0)
    out = torch.zeros(rows + 1, slots, points.shape[1], dtype=points.dtype, device=device)
    out[target_row, target_slot] = points[order]  # (row, slot) pairs of kept points are unique
    num_points = torch.zeros(rows + 1, dtype=torch.int32, device=device).index_add_(
        0, target_row, kept.to(torch.int32))[:rows]
    coords = torch.full((rows + 1, 4), -1, dtype=torch.int32, device=device)
    opener = first & (pillar < rows)
    opener_row = torch.where(opener, pillar, rows)
    coords[opener_row] = torch.stack([torch.full_like(ix[order], batch_index), torch.zeros_like(ix[order]),
                                      iy[order], ix[order]], dim=1).to(torch.int32)
    num_pillars = first.sum()
    dropped = (live & (pillar >= rows)).sum()
    counts = torch.stack([num_pillars.clamp(max=rows), num_pillars, dropped])
    return out[:rows].clone(), num_points, coords[:rows].clone(), counts
