"""Merge previous LiDAR sweeps into a key frame (mmdet3d ``LoadPointsFromMultiSweeps`` semantics).

A sweep's points go sensor(sweep) -> ego(sweep) -> global -> ego(key) -> sensor(key); column 4
becomes the time lag ``key_time - sweep_time`` in seconds, 0 for the key frame. As in the AWML
test pipeline (``pad_empty_sweeps=True, remove_close=True``): a key frame without any previous
sweep gets ``sweeps_num`` copies of itself, and points of merged sweeps within a 1 m square
around the sensor (``|x| < r and |y| < r``, in the sweep's own frame) are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from centerpoint_deploy.config.schema import TIME_LAG_COLUMN
from centerpoint_deploy.errors import DatasetError


@dataclass(frozen=True)
class SweepOptions:
    """How previous sweeps are merged.

    Attributes:
        sweeps_num: previous sweeps merged (nearest first); fewer are merged when fewer exist.
        pad_empty_sweeps: when a key frame has no previous sweep, merge ``sweeps_num`` copies
            of the key frame instead (time lag 0).
        remove_close_radius: drop merged sweep points with ``|x| < r and |y| < r`` (m); None keeps all.
    """

    sweeps_num: int = 1
    pad_empty_sweeps: bool = True
    remove_close_radius: float | None = 1.0

    def __post_init__(self) -> None:
        if self.sweeps_num < 0:
            raise DatasetError(f"sweeps_num = {self.sweeps_num} is invalid: must be >= 0")
        if self.remove_close_radius is not None and self.remove_close_radius < 0:
            raise DatasetError(f"remove_close_radius = {self.remove_close_radius} is invalid: must be >= 0 or None")


def sweep_to_key_transform(sweep_lidar2ego: np.ndarray, sweep_ego2global: np.ndarray,
                           key_lidar2ego: np.ndarray, key_ego2global: np.ndarray) -> np.ndarray:
    """4x4 sweep sensor -> key sensor, through ego(sweep), global and ego(key)."""
    key_lidar2global = key_ego2global @ key_lidar2ego
    return np.linalg.inv(key_lidar2global) @ sweep_ego2global @ sweep_lidar2ego


def close_mask(points: np.ndarray, radius: float) -> np.ndarray:
    """``ndarray[N]`` bool: ``|x| < radius and |y| < radius`` (mmdet3d ``_remove_close``'s test)."""
    return np.maximum(np.abs(points[:, 0]), np.abs(points[:, 1])) < radius


def select_rows(points: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``points[keep]`` for ``points [N, D]`` and a boolean ``keep [N]``, each row moved as one item
    (a row mask over a 2-D float array moves element by element, ten times slower)."""
    rows = np.ascontiguousarray(points)
    item = np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))
    return rows.view(item).reshape(len(rows))[keep].view(rows.dtype).reshape(-1, rows.shape[1])


@dataclass(frozen=True)
class MergePart:
    """One part of a merged frame: the rows of a source (0: the key frame, ``s``: the ``s``-th
    sweep, as read from its file), moved into the key frame.

    Attributes:
        source: which source's rows.
        sweep2key: 4x4 source sensor -> key sensor; ``None``: the rows keep their coordinates.
        time_lag: seconds, written into column 4.
        remove_close: drop the rows with ``|x| < r and |y| < r`` (in the source's own frame).
    """

    source: int
    sweep2key: np.ndarray | None
    time_lag: float
    remove_close: bool


def merge_parts(sweeps: Sequence[tuple[np.ndarray, float]], options: SweepOptions) -> tuple[MergePart, ...]:
    """The parts of a merged frame, in output order, for its previous sweeps ``(sweep2key, time_lag)``
    (nearest first; sources ``1..`` in this order): the key frame, then the first
    ``options.sweeps_num`` sweeps, or ``sweeps_num`` copies of the key frame when there is no sweep
    and ``options.pad_empty_sweeps``."""
    key = MergePart(0, None, 0.0, False)
    remove = options.remove_close_radius is not None
    if options.sweeps_num == 0:
        return (key,)
    if not sweeps and options.pad_empty_sweeps:
        return (key,) + (MergePart(0, None, 0.0, remove),) * options.sweeps_num
    return (key,) + tuple(MergePart(source, sweep2key, time_lag, remove)
                          for source, (sweep2key, time_lag) in enumerate(sweeps[: options.sweeps_num], start=1))


def move_xyz(xyz: np.ndarray, sweep2key: np.ndarray, out: np.ndarray) -> None:
    """``xyz [N, 3]`` through ``sweep2key`` (4x4) into ``out [N, 3]`` float32: each coordinate
    ``((x * R[j, 0] + y * R[j, 1]) + z * R[j, 2]) + t[j]`` in float64 one operation at a time,
    rounded once. The device merge (:func:`~centerpoint_deploy.data.device_merge.merge_on_device`)
    computes the same operations, so both give the same float32 (a BLAS matrix product would fuse
    some of them, differently on every machine)."""
    rotation, translation = sweep2key[:3, :3], sweep2key[:3, 3]
    coords = [xyz[:, k].astype(np.float64) for k in range(3)]  # contiguous columns: 1-D passes are fastest
    total, term = np.empty(len(xyz)), np.empty(len(xyz))
    for j in range(3):
        np.multiply(coords[0], rotation[j, 0], out=total)
        np.multiply(coords[1], rotation[j, 1], out=term)
        total += term
        np.multiply(coords[2], rotation[j, 2], out=term)
        total += term
        total += translation[j]
        out[:, j] = total


def merge_sources(sources: Sequence[np.ndarray], parts: Sequence[MergePart], radius: float | None) -> np.ndarray:
    """The merged frame of ``sources`` (``ndarray[N_s, D_s]`` float32, as read) by ``parts``.

    Returns:
        ``ndarray[sum of the parts' rows, max(D, 5)]`` float32; column 4 = each part's time lag.
        Written into one array part by part (no per-part copies and no concatenation: reading
        frames is bound by memory bandwidth).
    """
    kept = [~close_mask(sources[p.source], radius) if p.remove_close and radius is not None else None for p in parts]
    sizes = [len(sources[p.source]) if k is None else int(np.count_nonzero(k)) for p, k in zip(parts, kept)]
    width = max([TIME_LAG_COLUMN + 1] + [sources[p.source].shape[1] for p in parts])
    out = np.zeros((sum(sizes), width), dtype=np.float32)
    start = 0
    for part, keep, size in zip(parts, kept, sizes):
        points = sources[part.source] if keep is None else select_rows(sources[part.source], keep)
        rows = out[start: start + size]
        rows[:, : points.shape[1]] = points
        rows[:, TIME_LAG_COLUMN] = part.time_lag
        if part.sweep2key is not None:
            move_xyz(points[:, :3], part.sweep2key, rows[:, :3])
        start += size
    return out


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
