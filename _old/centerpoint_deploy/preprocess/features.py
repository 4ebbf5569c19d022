"""Per-point pillar decoration: the ``input_features`` tensor of the voxel-encoder ONNX.

Feature order follows mmdet3d ``PillarFeatureNet`` (and AWML's backward variant) exactly:
the raw point columns, then ``x - x̄, y - ȳ, z - z̄`` (cluster offsets), then
``x - xc, y - yc[, z - zc]`` (pillar-centre offsets), then ``||xyz||`` when
``with_distance``. Padded point slots are zeroed after decoration, as the network expects; so are
the padding pillars of :func:`~centerpoint_deploy.preprocess.voxelize.voxelize_padded` (``num_points`` 0).
"""

from __future__ import annotations

import torch
from torch import Tensor

from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.structures import Voxels


def pillar_centers(coords: Tensor, config: ModelConfig, dtype: torch.dtype = torch.float32) -> Tensor:
    """Centre of each pillar's voxel.

    Args:
        coords: ``Tensor[V, 4]`` int ``(batch, z, y, x)`` voxel indices.

    Returns:
        ``Tensor[V, 3]`` ``(xc, yc, zc)`` in metres, ``xc = ix * vx + (vx / 2 + x_min)`` (the
        grouping mmdet3d uses with ``legacy=False``, so the float32 values match bit for bit).
    """
    vx, vy, vz = config.voxelization.voxel_size
    x_min, y_min, z_min = config.voxelization.point_cloud_range[:3]
    return torch.stack(
        [
            coords[:, 3].to(dtype) * vx + (vx / 2 + x_min),
            coords[:, 2].to(dtype) * vy + (vy / 2 + y_min),
            coords[:, 1].to(dtype) * vz + (vz / 2 + z_min),
        ],
        dim=1,
    )


def decorate(voxels: Voxels, config: ModelConfig) -> Tensor:
    """Decorate every point of every pillar.

    Args:
        voxels: pillars with ``points [V, P, D]``, ``D = voxel_encoder.in_channels``.
        config: the model; ``voxel_encoder`` picks the features.

    Returns:
        ``Tensor[V, P, F]`` float32, ``F = config.num_features``; for the AWML model (F = 11):
        x, y, z, intensity, time_lag, x - x̄, y - ȳ, z - z̄, x - xc, y - yc, z - zc. ``x̄`` is the
        sum over all ``P`` slots divided by ``num_points``. With ``legacy=True`` the first
        columns hold the centre offsets instead of x, y (, z), as mmdet3d's in-place update
        leaves them. Slots at or beyond ``num_points`` are zero.
    """
    enc = config.voxel_encoder
    raw = voxels.points  # [V, P, D]
    xyz = raw[:, :, :3]
    parts: list[Tensor] = []
    if enc.with_cluster_center:
        # clamp: padding rows of a padded voxelization hold no point (their features are zeroed below)
        count = voxels.num_points.clamp(min=1).to(raw.dtype).view(-1, 1, 1)
        mean = xyz.sum(dim=1, keepdim=True) / count  # [V, 1, 3]
        parts.append(xyz - mean)
    if enc.with_voxel_center:
        num_axes = 3 if enc.with_voxel_center_z else 2
        offsets = xyz[:, :, :num_axes] - pillar_centers(voxels.coords, config, raw.dtype)[:, None, :num_axes]
        if enc.legacy:
            raw = torch.cat([offsets, raw[:, :, num_axes:]], dim=2)
        parts.append(offsets)
    if enc.with_distance:
        parts.append(torch.linalg.vector_norm(raw[:, :, :3], dim=2, keepdim=True))
    features = torch.cat([raw, *parts], dim=2)  # [V, P, F]
    slots = torch.arange(raw.shape[1], device=raw.device)
    valid = slots.unsqueeze(0) < voxels.num_points.unsqueeze(1)  # [V, P]
    return features * valid.unsqueeze(2).to(features.dtype)
