"""Small typed containers passed between pipeline stages.

Frames and conventions used everywhere:

- Points: ``Tensor[N, D]`` float32, LiDAR frame, columns as ``ModelConfig.points.use_dim``
  selects them (x, y, z, [intensity], time lag).
- Boxes: ``[x, y, z, l, w, h, yaw, vx, vy]``, LiDAR frame, z at the box's gravity centre,
  ``l`` along the heading, yaw counter-clockwise from +x in radians, velocity in m/s.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

@dataclass
class Voxels:
    """Hard-voxelized pillars of a batch of point clouds.

    Attributes:
        points: ``Tensor[V, P, D]`` float32, the first ``P`` points of each pillar in input
            order, raw point columns, zero in unused slots.
        num_points: ``Tensor[V]`` int32, valid points per pillar (1..P).
        coords: ``Tensor[V, 4]`` int32, ``(batch, z, y, x)`` voxel indices (z is always 0).
        batch_size: number of point clouds the pillars came from.
    """

    points: Tensor
    num_points: Tensor
    coords: Tensor
    batch_size: int = 1

    @property
    def num_voxels(self) -> int:
        return int(self.points.shape[0])

    def to(self, device: torch.device | str) -> "Voxels":
        return Voxels(self.points.to(device), self.num_points.to(device), self.coords.to(device), self.batch_size)


@dataclass
class Detections:
    """Boxes of one point cloud, in descending score order.

    Attributes:
        boxes: ``Tensor[K, 9]`` float32, ``[x, y, z, l, w, h, yaw, vx, vy]`` (see module doc).
        scores: ``Tensor[K]`` float32 in [0, 1].
        labels: ``Tensor[K]`` int64, index into ``ModelConfig.class_names``.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def to(self, device: torch.device | str) -> "Detections":
        return Detections(self.boxes.to(device), self.scores.to(device), self.labels.to(device))

    @classmethod
    def empty(cls, device: torch.device | str = "cpu") -> "Detections":
        return cls(torch.zeros(0, 9, device=device), torch.zeros(0, device=device),
                   torch.zeros(0, dtype=torch.int64, device=device))

    def to_records(self, class_names: tuple[str, ...]) -> list[dict]:
        """JSON-ready list: ``{"box": [9 floats], "score": float, "label": name}`` per box."""
        boxes, scores, labels = self.boxes.cpu().tolist(), self.scores.cpu().tolist(), self.labels.cpu().tolist()
        return [{"box": b, "score": s, "label": class_names[int(lab)]} for b, s, lab in zip(boxes, scores, labels)]
