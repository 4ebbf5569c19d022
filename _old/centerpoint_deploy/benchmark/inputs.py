"""Benchmark inputs: a realistic synthetic LiDAR frame and plain random clouds for scaling.

The realistic frame is one scan of the synthetic road world (``data.synthetic``): 64 beams,
1800 columns, 120 m range, about 100k points. Several sweeps can be merged into one cloud
(the 5th column is the time lag, 0.1 s per sweep, as the sweep loader writes it).
"""

from __future__ import annotations

import numpy as np

from centerpoint_deploy.config.schema import TIME_LAG_COLUMN, ModelConfig
from centerpoint_deploy.data.synthetic.generate import simulate_scan
from centerpoint_deploy.data.synthetic.lidar import LidarConfig
from centerpoint_deploy.data.synthetic.world import WorldConfig, build_world
from centerpoint_deploy.errors import BenchmarkError


def lidar_frame(seed: int = 0, sweeps: int = 1, sensor: LidarConfig = LidarConfig()) -> np.ndarray:
    """Points of ``sweeps`` consecutive scans of one synthetic road scene, in the key frame's sensor frame.

    The ego drives on between sweeps; earlier sweeps are not motion-compensated into the key
    frame (the scene moves by under a metre per sweep), which changes nothing for timing.

    Returns:
        ``np.ndarray[N, 5]`` float32: x, y, z (m), intensity (0-255), time lag (s, 0 for the
        key frame, ``0.1 * k`` for the k-th earlier sweep at 10 Hz).
    """
    if sweeps < 1:
        raise BenchmarkError(f"sweeps = {sweeps} is invalid: need >= 1")
    rng = np.random.default_rng(seed)
    period = 1.0 / sensor.rate_hz
    world = build_world(rng, WorldConfig(), (sweeps - 1) * period, sensor.max_range)
    directions, elevations = sensor.ray_directions(), sensor.elevations()
    clouds = []
    for k in range(sweeps):
        t = (sweeps - 1 - k) * period  # key frame last in time, first in the cloud
        points = simulate_scan(world, sensor, directions, elevations, t, rng)[0]
        points[:, TIME_LAG_COLUMN] = k * period
        clouds.append(points)
    return np.concatenate(clouds)


def random_cloud(num_points: int, config: ModelConfig, seed: int = 0) -> np.ndarray:
    """``num_points`` points uniform over the config's ``point_cloud_range``.

    Returns:
        ``np.ndarray[num_points, len(use_dim)]`` float32: x, y, z uniform in range, intensity
        uniform in [0, 255), time lag uniform in [0, 0.1) s, further columns zero.
    """
    if num_points < 1:
        raise BenchmarkError(f"num_points = {num_points} is invalid: need >= 1")
    rng = np.random.default_rng(seed)
    low = np.asarray(config.voxelization.point_cloud_range[:3], dtype=np.float64)
    high = np.asarray(config.voxelization.point_cloud_range[3:], dtype=np.float64)
    points = np.zeros((num_points, len(config.points.use_dim)), dtype=np.float32)
    points[:, :3] = rng.uniform(low, high, size=(num_points, 3))
    if points.shape[1] > 3:
        points[:, 3] = rng.uniform(0.0, 255.0, num_points)
    if points.shape[1] > 4:
        points[:, 4] = rng.uniform(0.0, 0.1, num_points)
    return points


def model_columns(points: np.ndarray, config: ModelConfig) -> np.ndarray:
    """The columns ``config.points.use_dim`` of a 5-column frame, contiguous float32."""
    use_dim = list(config.points.use_dim)
    if points.ndim != 2 or max(use_dim) >= points.shape[1]:
        raise BenchmarkError(f"points of shape {list(points.shape)} lack the columns use_dim = {use_dim}")
    return np.ascontiguousarray(points[:, use_dim], dtype=np.float32)
