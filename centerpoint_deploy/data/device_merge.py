"""The sweep merge after the upload: a frame read as its raw sources, merged on the device.

With ten sweeps a merged frame is about a million points, and merging them on the host (widening,
dropping the close points, moving each sweep into the key frame) cost a reader 45-61 ms a frame on
the H200 machine, four times what reading the files costs. For a CUDA pass the readers instead
read each source's file straight into the frame's shared slot, count the rows each part keeps
(:func:`raw_layout`) and send that small :class:`RawLayout`; after the slot's upload
:func:`merge_on_device` makes the merged frame in a few dozen kernels. It computes exactly what
:func:`~centerpoint_deploy.data.sweeps.merge_sources` computes on the host, bit for bit: the same
close test in float32 and the same float64 operations, one at a time, for the transform.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from centerpoint_deploy.config.schema import TIME_LAG_COLUMN
from centerpoint_deploy.data.sweeps import MergePart, close_mask


@dataclass(frozen=True)
class RawLayout:
    """How a frame read as its raw sources (one after another, each as in its file) merges.

    Attributes:
        source_rows: each source's rows, in order (0: the key frame, then the sweeps).
        parts: the merge's parts (:func:`~centerpoint_deploy.data.sweeps.merge_parts`).
        kept_rows: each part's rows once its close points are removed, counted where the
            sources were read (so the device merge knows its size without reading the device).
        radius: the close-point radius of the parts that remove them.
    """

    source_rows: tuple[int, ...]
    parts: tuple[MergePart, ...]
    kept_rows: tuple[int, ...]
    radius: float | None

    @property
    def raw_rows(self) -> int:
        """Rows read: every source once."""
        return sum(self.source_rows)

    @property
    def rows(self) -> int:
        """Rows of the merged frame."""
        return sum(self.kept_rows)


def raw_layout(sources: Sequence[np.ndarray], parts: Sequence[MergePart], radius: float | None) -> RawLayout:
    """The layout of ``sources`` (``ndarray[N_s, D]`` float32 each, as read) merged by ``parts``."""
    kept = tuple(int(np.count_nonzero(~close_mask(sources[p.source], radius))) if p.remove_close and radius is not None
                 else len(sources[p.source]) for p in parts)
    return RawLayout(tuple(len(s) for s in sources), tuple(parts), kept, radius)


# columns of the per-part table (float64, integers exact): R[:, 0], R[:, 1], R[:, 2], t, then these
_LAG, _MOVES, _REMOVE, _OFFSET, _ROWS = 12, 13, 14, 15, 16


def merge_on_device(raw: Tensor, layout: RawLayout) -> Tensor:
    """The merged frame of ``raw`` (``Tensor[layout.raw_rows, D]`` float32: the sources one after
    another) on its device, without reading the device on the host.

    Every operator is a launch from the loop's main thread (tens of microseconds each on a slow
    core), so the per-part values reach the rows in one gather of a per-part table made on the
    host, and each row's source row is its candidate index plus its part's offset.

    Returns:
        ``Tensor[layout.rows, max(D, 5)]`` float32, equal bit for bit to
        :func:`~centerpoint_deploy.data.sweeps.merge_sources` of the same sources.
    """
    device, parts = raw.device, layout.parts
    starts = np.concatenate([[0], np.cumsum(layout.source_rows)[:-1]])
    table = np.zeros((len(parts), _ROWS + 1))
    candidates = 0  # the rows of the earlier parts before the close-point removal
    for row, part in zip(table, parts):
        if part.sweep2key is not None:
            row[:12] = np.concatenate([part.sweep2key[:3, 0], part.sweep2key[:3, 1], part.sweep2key[:3, 2],
                                       part.sweep2key[:3, 3]])
            row[_MOVES] = 1.0
        row[_LAG], row[_REMOVE] = part.time_lag, float(part.remove_close and layout.radius is not None)
        row[_OFFSET], row[_ROWS] = starts[part.source] - candidates, layout.source_rows[part.source]
        candidates += layout.source_rows[part.source]
    table_on = torch.from_numpy(table)
    if device.type == "cuda":  # one small copy; from pageable memory it would wait for the stream's slot upload
        table_on = table_on.pin_memory().to(device, non_blocking=True)
    part_of = torch.repeat_interleave(torch.arange(len(parts), device=device), table_on[:, _ROWS].long(),
                                      output_size=candidates)
    per_row = table_on[part_of]  # [candidates, _ROWS + 1]: each row's part's values
    source_row = torch.arange(candidates, device=device) + per_row[:, _OFFSET].long()
    if layout.rows != candidates:  # some parts drop their close points
        size = raw[source_row, :2].abs()
        close = torch.maximum(size[:, 0], size[:, 1]) < layout.radius
        chosen = torch.nonzero_static(~(close & (per_row[:, _REMOVE] != 0)), size=layout.rows).squeeze(1)
        source_row, per_row = source_row[chosen], per_row[chosen]
    merged = raw[source_row]  # a new tensor, written in place below
    if raw.shape[1] <= TIME_LAG_COLUMN:  # no time-lag column in the files: one added
        merged = torch.cat([merged, merged.new_zeros(layout.rows, TIME_LAG_COLUMN + 1 - raw.shape[1])], dim=1)
    merged[:, TIME_LAG_COLUMN] = per_row[:, _LAG]  # rounded to float32 as the host merge rounds it
    if table[:, _MOVES].any():
        xyz, m = merged[:, :3].double(), per_row[:, :12]  # [N, 3], [N, 12]
        moved = ((xyz[:, 0:1] * m[:, 0:3] + xyz[:, 1:2] * m[:, 3:6]) + xyz[:, 2:3] * m[:, 6:9]) + m[:, 9:12]
        merged[:, :3] = torch.where(per_row[:, _MOVES, None] != 0, moved.float(), merged[:, :3])
    return merged

