"""Rigid transforms, quaternions and oriented boxes (numpy, float64 math).

Conventions: quaternions are ``[w, x, y, z]`` (nuScenes / T4 JSON order); a 4x4 transform
``T_a2b`` maps homogeneous points of frame ``a`` to frame ``b`` (``p_b = T_a2b @ p_a``).
Boxes are ``[x, y, z, l, w, h, yaw, ...]`` with z at the gravity centre, ``l`` along the
heading and yaw counter-clockwise about +z from +x, in radians.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def quaternion_to_matrix(quaternions: np.ndarray | Sequence[float]) -> np.ndarray:
    """Rotation matrices of unit quaternions.

    Args:
        quaternions: ``[..., 4]`` as ``[w, x, y, z]``; normalised here, so any non-zero scale works.

    Returns:
        ``[..., 3, 3]`` float64 rotation matrices.
    """
    q = np.asarray(quaternions, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    rows = (
        (1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)),
        (2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)),
        (2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)),
    )
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def yaw_to_quaternion(yaw: np.ndarray | float) -> np.ndarray:
    """``[..., 4]`` quaternions ``[w, 0, 0, z]`` of rotations by ``yaw`` (radians) about +z."""
    half = 0.5 * np.asarray(yaw, dtype=np.float64)
    zeros = np.zeros_like(half)
    return np.stack([np.cos(half), zeros, zeros, np.sin(half)], axis=-1)


def matrix_yaw(rotations: np.ndarray) -> np.ndarray:
    """Heading about +z of rotation matrices ``[..., 3, 3]``: the angle of the rotated x axis
    projected on the xy plane (the nuScenes ``quaternion_yaw`` rule), radians in (-pi, pi]."""
    return np.arctan2(rotations[..., 1, 0], rotations[..., 0, 0])


def make_transform(rotation: np.ndarray | Sequence[float], translation: np.ndarray | Sequence[float]) -> np.ndarray:
    """4x4 transform from a ``[w, x, y, z]`` quaternion (or a 3x3 matrix) and a translation ``[3]`` (m)."""
    rot = np.asarray(rotation, dtype=np.float64)
    transform = np.eye(4)
    transform[:3, :3] = rot if rot.shape == (3, 3) else quaternion_to_matrix(rot)
    transform[:3, 3] = np.asarray(translation, dtype=np.float64)
    return transform


def invert_transform(transform: np.ndarray) -> np.ndarray:
    """Inverse of rigid 4x4 transforms ``[..., 4, 4]`` (rotation transposed, no general inverse)."""
    rot_t = np.swapaxes(transform[..., :3, :3], -1, -2)
    inverse = np.zeros_like(transform, dtype=np.float64)
    inverse[..., :3, :3] = rot_t
    inverse[..., :3, 3] = -np.einsum("...ij,...j->...i", rot_t, transform[..., :3, 3])
    inverse[..., 3, 3] = 1.0
    return inverse


def transform_points(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to ``points (ndarray[N, 3])``; returns float64 ``[N, 3]``."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ transform[:3, :3].T + transform[:3, 3]


def transform_boxes(transform: np.ndarray, centers: np.ndarray, rotations: np.ndarray,
                    velocities: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Move boxes into another frame.

    Args:
        transform: 4x4 ``T_src2dst``.
        centers: ``[M, 3]`` box centres (m) in the source frame.
        rotations: ``[M, 3, 3]`` box orientations in the source frame.
        velocities: ``[M, 3]`` velocities (m/s) in the source frame.

    Returns:
        ``(centers [M, 3], yaws [M], velocities [M, 3])`` in the destination frame; velocities
        are rotated only (a frame change of a free vector), yaw is the heading about +z.
    """
    rot = transform[:3, :3]
    new_rotations = np.einsum("ij,mjk->mik", rot, rotations)
    return transform_points(transform, centers), matrix_yaw(new_rotations), velocities @ rot.T


def points_in_boxes(points: np.ndarray, boxes: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Which points lie inside which oriented upright boxes (faces included).

    Args:
        points: ``[N, >=3]`` x, y, z (m).
        boxes: ``[M, >=7]`` ``[x, y, z, l, w, h, yaw]``, z at the centre.
        margin: grows (> 0) or shrinks (< 0) every half size by this many metres.

    Returns:
        ``[N, M]`` bool.
    """
    pts = np.asarray(points, dtype=np.float64)[:, None, :3]  # [N, 1, 3]
    bx = np.asarray(boxes, dtype=np.float64)[None]  # [1, M, 7+]
    offset = pts - bx[..., :3]  # [N, M, 3]
    cos, sin = np.cos(bx[..., 6]), np.sin(bx[..., 6])
    local_x = offset[..., 0] * cos + offset[..., 1] * sin
    local_y = -offset[..., 0] * sin + offset[..., 1] * cos
    half = 0.5 * bx[..., 3:6] + margin
    return (
        (np.abs(local_x) <= half[..., 0])
        & (np.abs(local_y) <= half[..., 1])
        & (np.abs(offset[..., 2]) <= half[..., 2])
    )


def wrap_angle(angle: np.ndarray | float) -> np.ndarray:
    """Angles wrapped to [-pi, pi)."""
    return (np.asarray(angle, dtype=np.float64) + np.pi) % (2 * np.pi) - np.pi


def count_points_in_boxes(points: np.ndarray, boxes: np.ndarray, margin: float = 0.0, chunk: int = 16384) -> np.ndarray:
    """Points inside each box (see :func:`points_in_boxes`), in chunks of points to bound memory.

    Returns:
        ``[M]`` int64 counts.
    """
    counts = np.zeros(np.asarray(boxes).shape[0], dtype=np.int64)
    for start in range(0, points.shape[0], chunk):
        counts += points_in_boxes(points[start:start + chunk], boxes, margin).sum(axis=0)
    return counts
