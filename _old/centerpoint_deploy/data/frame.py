"""What a dataset yields: one LiDAR key frame with its ground truth.

Frames are produced lazily by :class:`centerpoint_deploy.data.dataset.FrameDataset`; the
readers (T4 scenes, info pickles) only build the light :class:`FrameRecord` list.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _identity() -> np.ndarray:
    return np.eye(4)


@dataclass
class GroundTruth:
    """Annotated boxes of one key frame, LiDAR frame.

    Attributes:
        boxes: ``ndarray[M, 9]`` float32 ``[x, y, z, l, w, h, yaw, vx, vy]``; z at the box centre,
            yaw CCW from +x (rad), velocity (m/s). Velocity is NaN where the source has none
            (an instance annotated in a single key frame and no ``velocity`` field).
        labels: ``ndarray[M]`` int64, index into ``class_names`` (never -1: annotations of
            unmapped categories are dropped by the readers).
        class_names: the class names ``labels`` index into.
        num_lidar_pts: ``ndarray[M]`` int64, LiDAR points inside each box (0 allowed; -1 where
            the source does not record it).
        attributes: per box, an attribute name (e.g. ``vehicle.moving``) or ``""``.
        instance_tokens: per box, the tracked instance it belongs to (``""`` if unknown).
    """

    boxes: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    num_lidar_pts: np.ndarray
    attributes: list[str]
    instance_tokens: list[str]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @classmethod
    def empty(cls, class_names: tuple[str, ...]) -> "GroundTruth":
        return cls(np.zeros((0, 9), np.float32), np.zeros(0, np.int64), tuple(class_names),
                   np.zeros(0, np.int64), [], [])

    def select(self, keep: np.ndarray) -> "GroundTruth":
        """The boxes where ``keep (ndarray[M] bool)`` is True."""
        idx = np.flatnonzero(keep)
        return GroundTruth(self.boxes[idx], self.labels[idx], self.class_names, self.num_lidar_pts[idx],
                           [self.attributes[i] for i in idx], [self.instance_tokens[i] for i in idx])


@dataclass
class Frame:
    """One key frame, ready for the detector.

    Attributes:
        token: the key frame's sample token (unique within a dataset).
        scene: the scene name (or token) the frame belongs to.
        timestamp: key frame time, integer microseconds.
        lidar_path: the key frame's point file.
        points: ``ndarray[N, max(load_dim, 5)]`` float32, LiDAR frame of the key frame: key frame
            points followed by the merged previous sweeps; column 4 is the time lag in seconds
            (0 for the key frame, key - sweep time for sweeps).
        gt: ground truth, or None when the source has no annotations.
        ego2global: 4x4 ego -> global pose at the key frame.
        lidar2ego: 4x4 LiDAR -> ego calibration of the key frame.
    """

    token: str
    scene: str
    timestamp: int
    lidar_path: str
    points: np.ndarray
    gt: GroundTruth | None
    ego2global: np.ndarray = field(default_factory=_identity)
    lidar2ego: np.ndarray = field(default_factory=_identity)

    @property
    def lidar2global(self) -> np.ndarray:
        """4x4 LiDAR -> global transform of the key frame."""
        return self.ego2global @ self.lidar2ego
