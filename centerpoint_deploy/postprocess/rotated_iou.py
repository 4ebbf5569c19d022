"""BEV IoU of rotated boxes, vectorized over pairs with numpy (no per-pair Python).

The intersection of two rectangles is a convex polygon whose vertices are the corners of
each rectangle that lie inside the other and the crossings of their edges (at most 8 of the
24 candidates). The candidates are sorted by angle around their mean and the area follows
from the shoelace formula, all with fixed shapes per pair.

On the host, as the node runs its IoU-BEV NMS: for the tens of pairs of a frame numpy's small
operations cost less than torch's (``benchmarks/node_host_cost.py``).
"""

from __future__ import annotations

import numpy as np

#: Tolerance (m) of the point-in-rectangle and segment-crossing tests (float64 arithmetic).
_EPS = 1e-9
#: Corner signs of a box, counter-clockwise: (along the heading, across it).
_HALF = np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])


def box_corners(boxes: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Corners of BEV boxes, counter-clockwise.

    Args:
        boxes: ``ndarray[P, 5]`` ``(x, y, length, width, yaw)``, length along the heading.
        cos, sin: ``ndarray[P]`` of the yaw.

    Returns:
        ``ndarray[P, 4, 2]``.
    """
    local = _HALF * (boxes[:, None, 2:4] / 2)  # [P, 4, 2]
    cos, sin = cos[:, None], sin[:, None]
    return np.stack([boxes[:, None, 0] + cos * local[..., 0] - sin * local[..., 1],
                     boxes[:, None, 1] + sin * local[..., 0] + cos * local[..., 1]], axis=2)


def _inside(points: np.ndarray, boxes: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """``points [P, N, 2]`` inside (or on) ``boxes [P, 5]`` (yaw ``cos``, ``sin`` ``[P]``) -> ``ndarray[P, N]`` bool."""
    dx = points[..., 0] - boxes[:, None, 0]
    dy = points[..., 1] - boxes[:, None, 1]
    cos, sin = cos[:, None], sin[:, None]
    along = cos * dx + sin * dy
    across = -sin * dx + cos * dy
    return (np.abs(along) <= boxes[:, None, 2] / 2 + _EPS) & (np.abs(across) <= boxes[:, None, 3] / 2 + _EPS)


def _edge_crossings(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crossings of every edge of ``a [P, 4, 2]`` with every edge of ``b [P, 4, 2]``.

    Returns:
        ``(points [P, 16, 2], valid [P, 16])``; parallel edges never cross.
    """
    p, r = a[:, :, None, :], (np.roll(a, -1, axis=1) - a)[:, :, None, :]  # [P, 4, 1, 2]
    q, s = b[:, None, :, :], (np.roll(b, -1, axis=1) - b)[:, None, :, :]  # [P, 1, 4, 2]
    denom = r[..., 0] * s[..., 1] - r[..., 1] * s[..., 0]  # [P, 4, 4]
    qp = q - p
    parallel = ~(np.abs(denom) > _EPS)
    safe = np.where(parallel, 1.0, denom)
    t = (qp[..., 0] * s[..., 1] - qp[..., 1] * s[..., 0]) / safe
    u = (qp[..., 0] * r[..., 1] - qp[..., 1] * r[..., 0]) / safe
    valid = ~parallel & (t >= -_EPS) & (t <= 1 + _EPS) & (u >= -_EPS) & (u <= 1 + _EPS)
    points = p + t[..., None] * r
    return points.reshape(len(a), 16, 2), valid.reshape(len(a), 16)


def intersection_area(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """BEV intersection area of box pairs ``a [P, 5]``, ``b [P, 5]`` -> ``ndarray[P]``."""
    cos_a, sin_a, cos_b, sin_b = np.cos(a[:, 4]), np.sin(a[:, 4]), np.cos(b[:, 4]), np.sin(b[:, 4])
    corners_a, corners_b = box_corners(a, cos_a, sin_a), box_corners(b, cos_b, sin_b)
    crossings, crossing_valid = _edge_crossings(corners_a, corners_b)
    points = np.concatenate([corners_a, corners_b, crossings], axis=1)  # [P, 24, 2]
    valid = np.concatenate([_inside(corners_a, b, cos_b, sin_b), _inside(corners_b, a, cos_a, sin_a),
                            crossing_valid], axis=1)  # [P, 24]
    count = valid.sum(axis=1)  # [P]
    centre = (points * valid[..., None]).sum(axis=1) / np.maximum(count, 1)[:, None]  # [P, 2]
    angle = np.arctan2(points[..., 1] - centre[:, None, 1], points[..., 0] - centre[:, None, 0])
    angle = np.where(valid, angle, 10.0)  # invalid ones sort last
    order = np.argsort(angle, axis=1)
    ring = np.take_along_axis(points, order[..., None], axis=1)  # [P, 24, 2] valid first, by angle
    slot = np.arange(points.shape[1])
    following = np.where(slot[None, :] + 1 < count[:, None], slot[None, :] + 1, 0)  # close the ring
    nxt = np.take_along_axis(ring, following[..., None], axis=1)
    cross = ring[..., 0] * nxt[..., 1] - ring[..., 1] * nxt[..., 0]
    area = 0.5 * np.abs(np.where(slot[None, :] < count[:, None], cross, 0.0).sum(axis=1))
    return np.where(count >= 3, area, 0.0)


def bev_iou_pairs(a: np.ndarray, b: np.ndarray, *, min_area: float = 1e-6, min_union_area: float = 0.01) -> np.ndarray:
    """IoU of box pairs with the rules of Autoware's ``object_recognition_utils::get2dIoU``.

    0 when the intersection is below ``min_area`` (m²) or the union below ``min_union_area``;
    else ``min(1, intersection / union)``.

    Args:
        a, b: ``ndarray[P, 5]`` ``(x, y, length, width, yaw)``, float64.

    Returns:
        ``ndarray[P]`` float64.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    inter = intersection_area(a, b)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    with np.errstate(invalid="ignore"):  # NaN sizes give NaN, then IoU 0
        iou = np.minimum(inter / np.where(union > 0, union, 1.0), 1.0)
        return np.where((inter < min_area) | (union < min_union_area), 0.0, iou)
