"""Global scene augmentations, applied to points and boxes together (numpy, vectorized).

Every transform maps a scene to a physically consistent scene: a point inside a box stays
inside the transformed box, and yaw and velocity turn with the positions. Order, as in
mmdet3d's CenterPoint pipeline: rotate, scale, translate (``GlobalRotScaleTrans``), then
flip (``RandomFlip3D``), then shuffle the points (``PointShuffle``).

Shapes: ``points (ndarray[N, D])`` with x, y, z in columns 0-2 (other columns untouched);
``boxes (ndarray[M, 9])`` ``[x, y, z, l, w, h, yaw, vx, vy]``, z at the gravity centre.
Functions return new arrays and never modify their inputs.
"""

from __future__ import annotations

import numpy as np

from centerpoint_deploy.train.config import AugmentConfig


def wrap_angle(angle: np.ndarray) -> np.ndarray:
    """Angles in radians mapped to [-pi, pi)."""
    return (angle + np.pi) % (2 * np.pi) - np.pi


def flip_x(points: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror across the y axis: x -> -x, yaw -> pi - yaw, vx -> -vx."""
    points, boxes = points.copy(), boxes.copy()
    points[:, 0] *= -1
    boxes[:, [0, 7]] *= -1
    boxes[:, 6] = wrap_angle(np.pi - boxes[:, 6])
    return points, boxes


def flip_y(points: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror across the x axis: y -> -y, yaw -> -yaw, vy -> -vy."""
    points, boxes = points.copy(), boxes.copy()
    points[:, 1] *= -1
    boxes[:, [1, 8]] *= -1
    boxes[:, 6] = wrap_angle(-boxes[:, 6])
    return points, boxes


def rotate(points: np.ndarray, boxes: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotate the scene counter-clockwise about the z axis by ``angle`` radians.

    Point and box centres and box velocities turn by ``angle``; yaw grows by ``angle``.
    """
    cos, sin = np.cos(angle), np.sin(angle)
    rot_t = np.array([[cos, sin], [-sin, cos]], dtype=points.dtype)  # row vectors: v @ R^T
    points, boxes = points.copy(), boxes.copy()
    points[:, :2] = points[:, :2] @ rot_t
    boxes[:, :2] = boxes[:, :2] @ rot_t.astype(boxes.dtype)
    boxes[:, 7:9] = boxes[:, 7:9] @ rot_t.astype(boxes.dtype)
    boxes[:, 6] = wrap_angle(boxes[:, 6] + angle)
    return points, boxes


def scale(points: np.ndarray, boxes: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Scale positions, box sizes and velocities by ``factor`` about the origin."""
    points, boxes = points.copy(), boxes.copy()
    points[:, :3] *= factor
    boxes[:, :6] *= factor
    boxes[:, 7:9] *= factor
    return points, boxes


def translate(points: np.ndarray, boxes: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shift points and box centres by ``shift (ndarray[3])`` metres."""
    points, boxes = points.copy(), boxes.copy()
    points[:, :3] += shift.astype(points.dtype)
    boxes[:, :3] += shift.astype(boxes.dtype)
    return points, boxes


def augment_scene(points: np.ndarray, boxes: np.ndarray, cfg: AugmentConfig,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw one set of global augmentations from ``cfg`` and apply it to the scene.

    Args:
        points: ``ndarray[N, D]`` float32 points (x, y, z first).
        boxes: ``ndarray[M, 9]`` boxes; row order is kept (labels stay aligned).
        cfg: ranges and switches.
        rng: the random source; the same seed gives the same augmentation.

    Returns:
        ``(points, boxes)`` transformed copies; points permuted when ``cfg.shuffle_points``.
    """
    points, boxes = rotate(points, boxes, rng.uniform(*cfg.rotation_range))
    points, boxes = scale(points, boxes, rng.uniform(*cfg.scale_range))
    points, boxes = translate(points, boxes, rng.normal(0.0, cfg.translation_std))
    if cfg.flip_x and rng.random() < 0.5:
        points, boxes = flip_x(points, boxes)
    if cfg.flip_y and rng.random() < 0.5:
        points, boxes = flip_y(points, boxes)
    if cfg.shuffle_points:
        points = points[rng.permutation(len(points))]
    return points, boxes
