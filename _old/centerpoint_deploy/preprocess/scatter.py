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
        ``v`` at ``(b, 0, y, x)`` and zeros elsewhere (a new tensor; :class:`BevCanvas` keeps one).
    """
    pillar_features = _pillar_rows(pillar_features, coords)
    height, width = bev_shape
    num_channels = pillar_features.shape[1]
    if check_coords:
        _check_coords(coords, batch_size, bev_shape)
    # Gather, not scatter: a [B*H*W] map holds each cell's pillar (V: none), and the canvas is
    # read off the pillar features with one zero row appended. Every canvas value is written
    # once, already in the output layout: no zero fill of the canvas and no transposing copy.
    cells, num_pillars, device = batch_size * height * width, pillar_features.shape[0], pillar_features.device
    pillar = torch.arange(num_pillars, device=device)  # [V]
    cell = _cell_rows(coords, batch_size, bev_shape)
    pillar_of_cell = torch.full((cells + _SPARE_ENTRIES,), num_pillars, dtype=torch.int64, device=device)
    pillar_of_cell[cell] = pillar
    table = torch.cat([pillar_features, pillar_features.new_zeros((1, num_channels))])  # [V + 1, C]
    if channels_last:  # [B, H, W, C] memory, seen as NCHW
        canvas = torch.index_select(table, 0, pillar_of_cell[:cells])  # [B*H*W, C]: whole rows per cell
        return canvas.view(batch_size, height, width, num_channels).permute(0, 3, 1, 2)
    canvas = torch.index_select(table.t().contiguous(), 1, pillar_of_cell[:cells])  # [C, B*H*W]
    return canvas.view(num_channels, batch_size, height, width).transpose(0, 1).contiguous()


def _pillar_rows(pillar_features: Tensor, coords: Tensor) -> Tensor:
    """``pillar_features`` as ``Tensor[V, C]``, checked against ``coords [V, 4]``."""
    if pillar_features.dim() == 3 and pillar_features.shape[1] == 1:
        pillar_features = pillar_features[:, 0]
    if pillar_features.dim() != 2:
        raise PointCloudError(f"pillar features must be [V, C] or [V, 1, C], got {list(pillar_features.shape)}")
    if coords.dim() != 2 or coords.shape[1] != 4 or coords.shape[0] != pillar_features.shape[0]:
        raise PointCloudError(f"coords must be [V={pillar_features.shape[0]}, 4], got {list(coords.shape)}")
    return pillar_features


def _check_coords(coords: Tensor, batch_size: int, bev_shape: tuple[int, int]) -> None:
    """Raise :class:`PointCloudError` for a non-padding pillar outside the canvas (reads the device)."""
    coords = coords.long()
    real = coords[coords[:, 0] >= 0]
    if real.shape[0]:
        low, high = real.amin(dim=0), real.amax(dim=0)  # [4], [4]
        if int(low.min()) < 0 or int(high[0]) >= batch_size or int(high[2]) >= bev_shape[0] or int(high[3]) >= bev_shape[1]:
            raise PointCloudError(f"coords span batch/y/x up to {high[[0, 2, 3]].tolist()} (min {low.tolist()}), "
                                  f"outside batch_size={batch_size}, bev_shape={tuple(bev_shape)}")


def _cell_rows(coords: Tensor, batch_size: int, bev_shape: tuple[int, int]) -> Tensor:
    """``Tensor[V]`` int64: each pillar's row of a ``[B*H*W + spare]`` canvas.

    Padding rows (batch index -1) go to spare entries after the cells, spread out: tens of
    thousands of writes to one address would serialise on a GPU.
    """
    height, width = bev_shape
    coords = coords.long()
    spare = batch_size * height * width + torch.arange(coords.shape[0], device=coords.device) % _SPARE_ENTRIES
    return torch.where(coords[:, 0] < 0, spare, (coords[:, 0] * height + coords[:, 2]) * width + coords[:, 3])


class BevCanvas:
    """A channels-last BEV canvas kept from run to run of a fixed-shape pipeline (a CUDA graph's input).

    :func:`scatter_to_bev` writes every cell of a new canvas (``B*H*W*C`` values: 74 MB for the
    j6gen2 grid in fp16). Here each run instead zeroes the cells the previous run wrote and
    writes its own pillars: ``2 V`` rows of ``C`` values. The canvas and the previous run's cells
    are allocated on the first call, which must not be inside a capture (a graph's warm-up runs
    are not); a later call of another shape, dtype or device starts a new canvas.

    The returned tensor is the canvas itself, rewritten by the next call: read it before.

    Args:
        batch_size: B, number of clouds.
        bev_shape: ``(H, W)``.
    """

    def __init__(self, batch_size: int, bev_shape: tuple[int, int]) -> None:
        self.batch_size, self.bev_shape = batch_size, tuple(bev_shape)
        self._rows: Tensor | None = None  # [B*H*W + spare, C]
        self._written: Tensor | None = None  # [V] int64: the rows the last call wrote

    def scatter(self, pillar_features: Tensor, coords: Tensor) -> Tensor:
        """``scatter_to_bev(..., channels_last=True)`` of ``pillar_features [V, C]`` at ``coords [V, 4]``
        (coords from this package's voxelization: not range-checked); ``Tensor[B, C, H, W]`` channels-last."""
        pillar_features = _pillar_rows(pillar_features, coords)
        num_pillars, num_channels = pillar_features.shape
        cells = self.batch_size * self.bev_shape[0] * self.bev_shape[1]
        rows = self._rows
        if (rows is None or rows.shape[1] != num_channels or rows.dtype != pillar_features.dtype
                or rows.device != pillar_features.device or self._written.shape[0] != num_pillars):
            if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
                raise PointCloudError("a BEV canvas must be allocated before a CUDA graph captures it "
                                      "(run the pipeline once first)")
            rows = pillar_features.new_zeros((cells + _SPARE_ENTRIES, num_channels))
            self._rows, self._written = rows, torch.full((num_pillars,), cells, dtype=torch.int64,
                                                         device=pillar_features.device)
        cell = _cell_rows(coords, self.batch_size, self.bev_shape)
        rows.index_fill_(0, self._written, 0)  # a scalar fill: no host tensor inside a capture
        rows[cell] = pillar_features
        self._written.copy_(cell)
        return rows[:cells].view(self.batch_size, *self.bev_shape, num_channels).permute(0, 3, 1, 2)
