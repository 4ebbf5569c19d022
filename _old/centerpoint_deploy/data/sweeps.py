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


@dataclass(frozen=True)
class Sweep:
    """One previous sweep, loaded.

    Attributes:
        points: ``ndarray[N, D]`` float32 in the sweep's own sensor frame.
        sweep2key: 4x4 transform sweep sensor -> key frame sensor.
        time_lag: key time - sweep time, seconds (>= 0).
    """

    points: np.ndarray
    sweep2key: np.ndarray
    time_lag: float


def sweep_to_key_transform(sweep_lidar2ego: np.ndarray, sweep_ego2global: np.ndarray,
                           key_lidar2ego: np.ndarray, key_ego2global: np.ndarray) -> np.ndarray:
    """4x4 sweep sensor -> key sensor, through ego(sweep), global and ego(key)."""
    key_lidar2global = key_ego2global @ key_lidar2ego
    return np.linalg.inv(key_lidar2global) @ sweep_ego2global @ sweep_lidar2ego


def with_time_lag_column(points: np.ndarray, time_lag: float = 0.0) -> np.ndarray:
    """Copy of ``points (ndarray[N, D])`` widened to at least 5 columns (zeros), column 4 = ``time_lag``."""
    width = max(points.shape[1], TIME_LAG_COLUMN + 1)
    out = np.zeros((points.shape[0], width), dtype=np.float32)
    out[:, : points.shape[1]] = points
    out[:, TIME_LAG_COLUMN] = time_lag
    return out


def close_mask(points: np.ndarray, radius: float) -> np.ndarray:
    """``ndarray[N]`` bool: ``|x| < radius and |y| < radius`` (mmdet3d ``_remove_close``'s test)."""
    return np.maximum(np.abs(points[:, 0]), np.abs(points[:, 1])) < radius


def remove_close(points: np.ndarray, radius: float) -> np.ndarray:
    """Drop points with ``|x| < radius and |y| < radius`` (mmdet3d ``_remove_close``)."""
    return select_rows(points, ~close_mask(points, radius))


def select_rows(points: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``points[keep]`` for ``points [N, D]`` and a boolean ``keep [N]``, each row moved as one item
    (a row mask over a 2-D float array moves element by element, ten times slower)."""
    rows = np.ascontiguousarray(points)
    item = np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))
    return rows.view(item).reshape(len(rows))[keep].view(rows.dtype).reshape(-1, rows.shape[1])


def merge_sweeps(key_points: np.ndarray, sweeps: Sequence[Sweep], options: SweepOptions) -> np.ndarray:
    """Key frame points followed by the first ``options.sweeps_num`` sweeps, in the key LiDAR frame.

    Args:
        key_points: ``ndarray[N, D]`` float32, key frame, its own LiDAR frame.
        sweeps: previous sweeps, nearest first.
        options: how many sweeps and which mmdet3d options.

    Returns:
        ``ndarray[N', max(D, 5)]`` float32; column 4 = time lag (s), 0 for key frame rows. Written
        into one array part by part (no per-part copies and no concatenation: reading frames is
        bound by memory bandwidth).
    """
    if options.sweeps_num == 0:
        return with_time_lag_column(key_points)
    if not sweeps and options.pad_empty_sweeps:
        key = with_time_lag_column(key_points)
        padded = key if options.remove_close_radius is None else remove_close(key, options.remove_close_radius)
        return np.concatenate([key] + [padded] * options.sweeps_num, axis=0)
    used = sweeps[: options.sweeps_num]
    kept = [None if options.remove_close_radius is None else ~close_mask(s.points, options.remove_close_radius)
            for s in used]
    sizes = [len(key_points)] + [len(s.points) if k is None else int(np.count_nonzero(k)) for s, k in zip(used, kept)]
    width = max([key_points.shape[1], TIME_LAG_COLUMN + 1] + [s.points.shape[1] for s in used])
    out = np.zeros((sum(sizes), width), dtype=np.float32)
    out[: sizes[0], : key_points.shape[1]] = key_points
    out[: sizes[0], TIME_LAG_COLUMN] = 0.0
    start = sizes[0]
    for sweep, keep, size in zip(used, kept, sizes[1:]):
        points = sweep.points if keep is None else select_rows(sweep.points, keep)
        rows = out[start: start + size]
        rows[:, : points.shape[1]] = points
        rows[:, TIME_LAG_COLUMN] = sweep.time_lag
        rows[:, :3] = points[:, :3].astype(np.float64) @ sweep.sweep2key[:3, :3].T + sweep.sweep2key[:3, 3]
        start += size
    return out
