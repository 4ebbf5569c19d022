"""The sweep merge after the upload: a frame read as its raw sources, merged on the device.

With ten sweeps a merged frame is about a million points, and merging them on the host (widening,
dropping the close points, moving each sweep into the key frame) cost a reader 45-61 ms a frame on
the H200 machine, four times what reading the files costs. For a CUDA pass the readers instead
read each source's file straight into the frame's shared slot, count the rows each part keeps
(:func:`~centerpoint_deploy.data.sweeps.raw_layout`) and send that small
:class:`~centerpoint_deploy.data.sweeps.RawLayout`; after the slot's upload
:func:`merge_on_device` makes the merged frame in a few dozen kernels. It computes exactly what
:func:`~centerpoint_deploy.data.sweeps.merge_sources` computes on the host, bit for bit: the same
close test in float32 and the same float64 operations, one at a time, for the transform.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from centerpoint_deploy.config.schema import TIME_LAG_COLUMN
from centerpoint_deploy.data.sweeps import RawLayout
from centerpoint_deploy.cuda_graphs import capture, quarter_octave


# columns of the per-part table (float64, integers exact): R[:, 0], R[:, 1], R[:, 2], t, then these
_LAG, _MOVES, _REMOVE, _OFFSET, _END, _LIVE = 12, 13, 14, 15, 16, 17
_COLUMNS = _LIVE + 1


def merge_table(layout: RawLayout) -> np.ndarray:
    """``ndarray[P + 1, 18]`` float64: a row per merge part (its transform, time lag, whether it
    moves and removes close points, its source row offset, the end of its candidate rows), then
    a row for the candidate rows past the last part (not live)."""
    parts = layout.parts
    starts = np.concatenate([[0], np.cumsum(layout.source_rows)[:-1]])
    table = np.zeros((len(parts) + 1, _COLUMNS))
    candidates = 0  # the rows of the earlier parts before the close-point removal
    for row, part in zip(table, parts):
        if part.sweep2key is not None:
            row[:12] = np.concatenate([part.sweep2key[:3, 0], part.sweep2key[:3, 1], part.sweep2key[:3, 2],
                                       part.sweep2key[:3, 3]])
            row[_MOVES] = 1.0
        row[_LAG], row[_REMOVE] = part.time_lag, float(part.remove_close and layout.radius is not None)
        row[_OFFSET] = starts[part.source] - candidates
        candidates += layout.source_rows[part.source]
        row[_END], row[_LIVE] = candidates, 1.0
    table[-1, _END] = np.inf
    return table


def candidate_rows(layout: RawLayout) -> int:
    """Rows of the parts before their close points are removed."""
    return sum(layout.source_rows[p.source] for p in layout.parts)


def merge_rows(raw: Tensor, table: Tensor, candidates: int, rows: int, radius: float | None, moves: bool) -> Tensor:
    """The merge's arithmetic on fixed sizes (what a captured graph replays).

    Args:
        raw: ``Tensor[R, D]`` float32, the sources one after another, then any rows (not read
            for the merged rows).
        table: :func:`merge_table` of the layout on ``raw``'s device.
        candidates: candidate rows to consider, at least the layout's :func:`candidate_rows`.
        rows: rows to return, at least the layout's ``rows``.
        radius: the layout's close-point radius.
        moves: whether any part moves its points (when not, the transform is skipped).

    Returns:
        ``Tensor[rows, max(D, 5)]`` float32: the merged frame in the first ``layout.rows`` rows,
        equal bit for bit to :func:`~centerpoint_deploy.data.sweeps.merge_sources` of the same
        sources; the rows after them are not defined.
    """
    device = raw.device
    position = torch.arange(candidates, device=device, dtype=torch.float64)
    part_of = torch.searchsorted(table[:, _END].contiguous(), position, right=True)  # [candidates]
    # the table's values are read one column at a time (a 1-D gather each): gathering whole rows of
    # the table, one thread block of 32 per row, took 0.63 ms a million rows on the H200
    source_row = (position + table[:, _OFFSET][part_of]).long().clamp_(0, raw.shape[0] - 1)
    keep = table[:, _LIVE][part_of] != 0
    if radius is not None:
        size = raw[source_row, :2].abs()
        close = torch.maximum(size[:, 0], size[:, 1]) < radius
        keep &= ~(close & (table[:, _REMOVE][part_of] != 0))
    chosen = torch.nonzero_static(keep, size=rows, fill_value=0).squeeze(1)  # the kept rows in order, then zeros
    source_row, part = source_row[chosen], part_of[chosen]
    merged = raw[source_row]  # a new tensor, written in place below
    if raw.shape[1] <= TIME_LAG_COLUMN:  # no time-lag column in the files: one added
        merged = torch.cat([merged, merged.new_zeros(rows, TIME_LAG_COLUMN + 1 - raw.shape[1])], dim=1)
    merged[:, TIME_LAG_COLUMN] = table[:, _LAG][part]  # rounded to float32 as the host merge rounds it
    if moves:
        # [4, 3, N]: each row's coefficients of x, y and z and its translation, for each output coordinate
        m = table[:, :12].t().contiguous().index_select(1, part).view(4, 3, rows)
        xyz = merged[:, :3].t().double()  # [3, N]
        moved = ((xyz[0] * m[0] + xyz[1] * m[1]) + xyz[2] * m[2]) + m[3]  # [3, N]
        merged[:, :3] = torch.where(table[:, _MOVES][part] != 0, moved.float(), merged[:, :3].t()).t()
    return merged


def merge_on_device(raw: Tensor, layout: RawLayout) -> Tensor:
    """The merged frame of ``raw`` (``Tensor[layout.raw_rows, D]`` float32: the sources one after
    another) on its device, operator by operator, without reading the device on the host.

    Returns:
        ``Tensor[layout.rows, max(D, 5)]`` float32, equal bit for bit to
        :func:`~centerpoint_deploy.data.sweeps.merge_sources` of the same sources.
    """
    table = merge_table(layout)
    table_on = torch.from_numpy(table)
    if raw.device.type == "cuda":  # one small copy; from pageable memory it would wait for the stream's slot upload
        table_on = table_on.pin_memory().to(raw.device, non_blocking=True)
    return merge_rows(raw, table_on, candidate_rows(layout), layout.rows, layout.radius,
                      bool(table[:, _MOVES].any()))


class _CapturedMerge:
    """One merge graph: its input buffers, and the graph that fills its output from them."""

    def __init__(self, raw_rows: int, width: int, parts: int, candidates: int, radius: float | None, moves: bool,
                 columns: tuple[int, ...] | None, device: torch.device) -> None:
        self.raw = torch.zeros(raw_rows, width, device=device)
        self.table = torch.zeros(parts + 1, _COLUMNS, dtype=torch.float64, device=device)
        self.table[:, _END] = torch.inf  # no live rows until a frame's table is copied in
        # a frame's table goes through this page-locked copy (no page-locked allocation a frame);
        # the event marks the last copy out of it
        self.staged = torch.empty(parts + 1, _COLUMNS, dtype=torch.float64, pin_memory=True)
        self.staged_read = torch.cuda.Event()

        # made before the capture and kept with the graph, which reads it at every replay
        self.columns = None if columns is None else torch.tensor(columns, device=device)

        def merge(_: object) -> Tensor:
            merged = merge_rows(self.raw, self.table, candidates, candidates, radius, moves)
            return merged if self.columns is None else merged.index_select(1, self.columns)

        self.captured = capture(merge, device)


class MergeGraphs:
    """The device merge as CUDA graph replays: a launch from the loop's main thread per frame
    instead of one per operator (about twenty of them, tens of microseconds each on a slow core).

    Frames are padded to a few sizes (quarter octaves of their raw and candidate rows, as the
    pipeline's point buffers are); each size's graph is captured the first time it is needed,
    on the current stream.

    Args:
        device: the CUDA device.
        columns: the columns to keep of the merged frame (None: all).
    """

    def __init__(self, device: torch.device, columns: Sequence[int] | None) -> None:
        self.device = device
        self.columns = None if columns is None else tuple(columns)
        self._graphs: dict[tuple, _CapturedMerge] = {}

    def __call__(self, raw: Tensor, layout: RawLayout) -> Tensor:
        """The merged frame (columns selected) of ``raw`` (``Tensor[layout.raw_rows, D]`` float32 on the
        host, page-locked for an asynchronous copy; keep it unchanged until the current stream has
        copied it): a new ``Tensor[layout.rows, D']`` on the device, queued on the current stream."""
        table = merge_table(layout)
        moves = bool(table[:, _MOVES].any())
        key = (quarter_octave(max(layout.raw_rows, _MIN_ROWS)), raw.shape[1], len(layout.parts),
               quarter_octave(max(candidate_rows(layout), _MIN_ROWS)), layout.radius, moves)
        captured = self._graphs.get(key)
        if captured is None:
            captured = self._graphs[key] = _CapturedMerge(*key, self.columns, self.device)
        captured.raw[: layout.raw_rows].copy_(raw, non_blocking=True)
        captured.staged_read.synchronize()  # the previous frame's table was copied a frame ago
        captured.staged.numpy()[:] = table
        captured.table.copy_(captured.staged, non_blocking=True)
        captured.staged_read.record()
        captured.captured.replay()
        return captured.captured.result[: layout.rows].clone()  # the next frame's replay overwrites the output


#: The fewest rows a merge graph is captured for.
_MIN_ROWS = 1 << 12
