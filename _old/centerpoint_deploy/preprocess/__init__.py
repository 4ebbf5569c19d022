"""Pre-processing: raw points -> pillars -> decorated encoder input; pillar features -> BEV.

All of it runs in vectorized torch on the points' device; CPU and CUDA give identical results.
"""

from __future__ import annotations

import torch
from torch import Tensor

from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.errors import PointCloudError
from centerpoint_deploy.preprocess.features import decorate
from centerpoint_deploy.preprocess.scatter import scatter_to_bev
from centerpoint_deploy.preprocess.voxelize import voxelize, voxelize_padded
from centerpoint_deploy.structures import Voxels

__all__ = [
    "check_points", "count_nonfinite", "decorate", "prepare_encoder_input", "raise_nonfinite", "scatter_to_bev",
    "voxelize", "voxelize_padded",
]


def check_points(points: list[Tensor], config: ModelConfig, *, check_values: bool = True) -> None:
    """Raise :class:`PointCloudError` unless every cloud fits the model.

    Each cloud must be a float32 ``Tensor[N, D]`` with ``N >= 1``,
    ``D = len(config.points.use_dim)`` and only finite values; all on one device.
    ``check_values=False`` checks only types, shapes and devices (no host synchronisation);
    the caller then checks :func:`count_nonfinite` itself.
    """
    if not isinstance(points, (list, tuple)) or not points:
        raise PointCloudError(f"expected a non-empty list of point tensors, got {type(points).__name__}"
                              + (" of length 0" if isinstance(points, (list, tuple)) else ""))
    num_dims = len(config.points.use_dim)
    devices = set()
    for index, cloud in enumerate(points):
        if not isinstance(cloud, Tensor):
            raise PointCloudError(f"point cloud {index} is a {type(cloud).__name__}, expected a torch.Tensor")
        if cloud.dtype != torch.float32:
            raise PointCloudError(f"point cloud {index} has dtype {cloud.dtype}, expected torch.float32")
        if cloud.dim() != 2 or cloud.shape[1] != num_dims:
            raise PointCloudError(f"point cloud {index} has shape {list(cloud.shape)}, expected [N, {num_dims}] "
                                  f"(columns points.use_dim = {list(config.points.use_dim)})")
        if cloud.shape[0] == 0:
            raise PointCloudError(f"point cloud {index} is empty")
        devices.add(cloud.device)
    if len(devices) > 1:
        raise PointCloudError(f"point clouds are on several devices {sorted(map(str, devices))}; put them on one")
    if check_values:
        raise_nonfinite(count_nonfinite(points).tolist(), [int(cloud.shape[0]) for cloud in points])


def count_nonfinite(points: list[Tensor]) -> Tensor:
    """``Tensor[B]`` int64 on the clouds' device: points holding NaN or inf, per cloud (no host sync)."""
    return torch.stack([(~torch.isfinite(cloud).all(dim=1)).sum() for cloud in points])


def raise_nonfinite(bad: list[int], num_points: list[int]) -> None:
    """Raise :class:`PointCloudError` for the first cloud with ``bad[i] > 0`` non-finite points."""
    for index, (count, total) in enumerate(zip(bad, num_points)):
        if count:
            raise PointCloudError(f"point cloud {index}: {count} of {total} points hold NaN or inf values")


def prepare_encoder_input(points: list[Tensor], config: ModelConfig) -> tuple[Voxels, Tensor]:
    """Check, voxelize and decorate a batch of clouds.

    Args:
        points: one ``Tensor[N_i, len(use_dim)]`` float32 per cloud, one device.

    Returns:
        ``(voxels, features)``: the pillars and ``Tensor[V, P, F]`` float32 (``input_features``).
    """
    check_points(points, config)
    voxels = voxelize(list(points), config.voxelization)
    return voxels, decorate(voxels, config)
