"""PointPillarsScatter: pillar features onto the dense BEV canvas (rows = y, columns = x)."""

from __future__ import annotations

import torch
from torch import Tensor

from centerpoint_deploy.errors import PointCloudError

#: Entries after the canvas cells where padding pillars are written (and never read).
_SPARE_ENTRIES = 1024


def scatter_to_bev(pillar_features: Tensor, coords: Tensor, batch_size: int, bev_shape: tuple[int, int], *,
                   check_coords: bool = True, channels_last: bool = False) -> Tensor:
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
        channels_last: lay the canvas out in memory as ``[B, H, W, C]`` (``torch.channels_last``),
            for a network that runs channels-last; else contiguous NCHW.

    Returns:
        ``Tensor[B, C, H, W]`` with ``out[b, :, y, x] = pillar_features[v]`` for the pillar
        ``v`` at ``(b, 0, y, x)`` and zeros elsewhere.
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
    # Gather, not scatter: a [B*H*W] map holds each cell's pillar (V: none), and the canvas is
    # read off the pillar features with one zero row appended. Every canvas value is written
    # once, already in the output layout: no zero fill of the canvas and no transposing copy.
    # Padding rows go to spare entries after the cells, spread out: tens of thousands of writes
    # to one address would serialise on a GPU.
    cells, num_pillars, device = batch_size * height * width, pillar_features.shape[0], pillar_features.device
    pillar = torch.arange(num_pillars, device=device)  # [V]
    cell = torch.where(padding, cells + pillar % _SPARE_ENTRIES,
                       (coords[:, 0] * height + coords[:, 2]) * width + coords[:, 3])  # [V]
    pillar_of_cell = torch.full((cells + _SPARE_ENTRIES,), num_pillars, dtype=torch.int64, device=device)
    pillar_of_cell[cell] = pillar
    table = torch.cat([pillar_features, pillar_features.new_zeros((1, num_channels))])  # [V + 1, C]
    if channels_last:  # [B, H, W, C] memory, seen as NCHW
        canvas = torch.index_select(table, 0, pillar_of_cell[:cells])  # [B*H*W, C]: whole rows per cell
        return canvas.view(batch_size, height, width, num_channels).permute(0, 3, 1, 2)
    canvas = torch.index_select(table.t().contiguous(), 1, pillar_of_cell[:cells])  # [C, B*H*W]
    return canvas.view(num_channels, batch_size, height, width).transpose(0, 1).contiguous()
