"""The point buffer of the captured fixed-shape pipeline: points in, padded to a few fixed sizes.

A frame then costs one host -> device copy of the points into a pre-allocated buffer, one
graph replay (every kernel from voxelization to NMS, launched by the driver at once instead of
one by one from Python) and one device -> host copy of the packed result. The buffer has
:func:`point_capacity` rows per cloud; the rows after a cloud's points hold :func:`padding_point`,
which lies outside ``point_cloud_range`` and so is dropped by voxelization like any point out
of range (it is finite, so the deferred non-finite check does not count it).

:class:`~centerpoint_deploy.static_pipeline.StaticPipeline` builds these (``graph=True``);
nothing here knows the pipeline's stages.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from centerpoint_deploy.config.schema import VoxelizationConfig
from centerpoint_deploy.cuda_graphs import quarter_octave

#: The smallest point buffer a graph gets (rows per cloud).
MIN_CAPACITY = 1 << 14


def point_capacity(num_points: int, max_points: int) -> int:
    """Rows per cloud of the point buffer for clouds of up to ``num_points`` points.

    The next multiple of a quarter of the power of two below ``num_points`` (sizes ``2^k``,
    ``1.25 * 2^k``, ``1.5 * 2^k``, ``1.75 * 2^k``; at least :data:`MIN_CAPACITY`), capped at
    ``max_points``: frames of one sensor, whose sizes vary by a few percent, land in one or two
    sizes, each captured once, and voxelization (which sorts every buffer row) works on at most
    1.25 times the points (a power of two: up to twice).
    """
    return min(quarter_octave(max(num_points, MIN_CAPACITY)), max_points)


#: Pillar rows a captured graph gives each cloud over the most pillars of the clouds it was captured on.
PILLAR_MARGIN = 1.5
#: The fewest pillar rows per cloud a graph gets (below ``max_voxels``).
MIN_PILLAR_ROWS = 1 << 12


def pillar_capacity(pillars: int, max_voxels: int) -> int:
    """Pillar rows per cloud of a captured graph for clouds of up to ``pillars`` pillars.

    The encoder, the decoration and the pillar gathers work on every row, padding included:
    ``max_voxels`` rows (64,000 for the AWML model) for a frame of ~8,000 pillars is eight times
    the work. A graph gets :data:`PILLAR_MARGIN` times the pillars it saw, in quarter octaves
    (at least :data:`MIN_PILLAR_ROWS`, at most ``max_voxels``); a frame with more is run again
    uncaptured and the next graph gets room for it.
    """
    return min(quarter_octave(max(math.ceil(pillars * PILLAR_MARGIN), MIN_PILLAR_ROWS)), max_voxels)


#: The largest cloud a captured pipeline takes by default (10 merged sweeps of a 64-beam sensor
#: are about a million points); a larger one runs uncaptured.
DEFAULT_MAX_POINTS = 1 << 21


def padding_point(cfg: VoxelizationConfig, num_dims: int) -> Tensor:
    """``Tensor[num_dims]`` float32: x one voxel beyond ``point_cloud_range``'s upper x bound, other columns 0."""
    point = torch.zeros(num_dims, dtype=torch.float32)
    point[0] = cfg.point_cloud_range[3] + cfg.voxel_size[0]
    return point


class PointBuffer:
    """Fixed-size device copies of a batch of clouds.

    Args:
        batch: clouds per call (B).
        max_points: rows per cloud (N_max).
        num_dims: columns per point (D).
        cfg: the grid (for :func:`padding_point`).
        device: where the buffer lives.

    Attributes:
        points: ``Tensor[B, N_max, D]``; cloud ``b``'s points, then padding points.
    """

    def __init__(self, batch: int, max_points: int, num_dims: int, cfg: VoxelizationConfig,
                 device: torch.device) -> None:
        self.padding = padding_point(cfg, num_dims).to(device)
        self.points = self.padding.expand(batch, max_points, num_dims).clone()
        # pageable host clouds go through pinned memory: an asynchronous DMA copy, not a staged one
        self._staging = torch.empty(batch, max_points, num_dims, pin_memory=True) if device.type == "cuda" else None
        self._rows_in_use = [0] * batch  # rows holding points of the last load, per cloud

    @property
    def clouds(self) -> list[Tensor]:
        """One ``Tensor[N_max, D]`` view per cloud (what the graph reads)."""
        return list(self.points.unbind(0))

    def load(self, clouds: Sequence[Tensor]) -> None:
        """Copy ``clouds`` (``Tensor[N_b, D]``, ``N_b <= N_max``, B of them) in; re-pad rows the last load used.

        The device copy does not block the host: a pinned cloud is copied directly (keep it
        unchanged until the result is read), a pageable one through the buffer's pinned staging
        rows (reused by the next load, which callers make after reading the last result).
        """
        for index, cloud in enumerate(clouds):
            rows = int(cloud.shape[0])
            if self._staging is not None and cloud.device.type == "cpu" and not cloud.is_pinned():
                cloud = self._staging[index, :rows].copy_(cloud)
            self.points[index, :rows].copy_(cloud, non_blocking=True)
            if rows < self._rows_in_use[index]:
                self.points[index, rows: self._rows_in_use[index]] = self.padding
            self._rows_in_use[index] = rows
