"""The model's input cloud, read one way by every command.

A point file holds one sweep: its time-lag column is 0 (the frame is its own key frame), as
:func:`~centerpoint_deploy.data.pointcloud.key_frame_points` sets it, so a T4 / nuScenes
file's fifth column (the ring index) never reaches the model as a time lag. A dataset frame
(:class:`~centerpoint_deploy.data.frame.Frame`) already holds its merged sweeps with their time
lags, so its columns ``points.use_dim`` are taken as they are
(:func:`~centerpoint_deploy.data.loader.load_clouds`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.data.pointcloud import key_frame_points, read_points


def file_cloud(path: Path | str, config: ModelConfig, *, load_dim: int | None = None,
               keep_time_lag: bool = False) -> Tensor:
    """``Tensor[N, len(use_dim)]`` float32 of a point file read with ``load_dim`` (default ``config.points.load_dim``)
    floats per point; time lag 0 unless ``keep_time_lag`` (sweeps merged in the file already)."""
    raw = read_points(path, load_dim or config.points.load_dim)
    return torch.from_numpy(key_frame_points(raw, config.points, keep_time_lag=keep_time_lag))
