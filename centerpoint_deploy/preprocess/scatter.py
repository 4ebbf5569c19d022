"""PointPillarsScatter: pillar features onto the dense BEV canvas (rows = y, columns = x)."""

from __future__ import annotations

import torch
from torch import Tensor

from centerpoint_deploy.errors import PointCloudError


def scatter_to_bev(pillar_features: Tensor, coords: Tensor, batch_size: int, bev_shape: tuple[int, int], *,
                   check_coords: bool = True) -> Tensor:
    """Place each pillar's feature vector at its cell of an all-zero canvas.

    Args:
        pillar_features: ``Tensor[V, C]`` or ``Tensor[V, 1, C]`` (the encoder's output).
        coords: ``Tensor[V, 4]`` int ``(batch, z, y, x)``, distinct per pillar; rows with batch
            index -1 are padding (:func:`~centerpoint_deploy.preprocess.voxelize.voxelize_padded`)
            and are skipped.
        batch_size: B, number of clouds.
        bev_shape: ``(H, W)`` = ``(ny, nx)``.
        check_coords: raise for coords outside the canvas. Reading them synchronises a GPU;
            pass False for coords that come from this package's voxelization.

    Returns:
        ``Tensor[B, C, H, W]`` (NCHW) with ``out[b, :, y, x] = pillar_features[v]`` for the
        pillar ``v`` at ``(b, 0, y, x)`` and zeros elsewhere.
    """
    if pillar_features.dim() == 3 and pillar_features.shape[1] == 1:
        pillar_features = pillar_features[:, 0]
    if pillar_features.dim() != 2:
        raise PointCloudError(f"pillar features must be [V, C] or [V, 1, C], got {list(pillar_features.shape)}")
    if coords.dim() != 2 or coords.shape[1] != 4 or coords.shape[0] != pillar_features.shape[0]:
        raise PointCloudError(f"coords must be [V={pillar_features.shape[0]}, 4], got {list(coords.shape)}")
    height, width = bev_shape
    num_channels = pillar_features.shape[1]
    coords = coords.long()
    padding = coords[:, 0] < 0  # [V]
    real = coords[~padding] if check_coords else coords[:0]
    if real.shape[0]:
        low, high = real.amin(dim=0), real.amax(dim=0)  # [4], [4]
        if int(low.min()) < 0 or int(high[0]) >= batch_size or int(high[2]) >= height or int(high[3]) >= width:
            raise PointCloudError(f"coords span batch/y/x up to {high[[0, 2, 3]].tolist()} (min {low.tolist()}), "
                                  f"outside batch_size={batch_size}, bev_shape={tuple(bev_shape)}")
    spare = batch_size * height * width
    cell = torch.where(padding, spare, (coords[:, 0] * height + coords[:, 2]) * width + coords[:, 3])  # [V]
    canvas = pillar_features.new_zeros((spare + 1, num_channels))  # the last row collects the padding
    canvas[cell] = pillar_features
    return canvas[:spare].view(batch_size, height, width, num_channels).permute(0, 3, 1, 2).contiguous()
