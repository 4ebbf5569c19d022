"""BEV IoU of rotated boxes, vectorized over pairs (no per-pair Python).

The intersection of two rectangles is a convex polygon whose vertices are the corners of
each rectangle that lie inside the other and the crossings of their edges (at most 8 of the
24 candidates). The candidates are sorted by angle around their mean and the area follows
from the shoelace formula, all with fixed shapes per pair.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Tolerance (m) of the point-in-rectangle and segment-crossing tests (float64 arithmetic).
_EPS = 1e-9


def box_corners(boxes: Tensor) -> Tensor:
    """Corners of BEV boxes, counter-clockwise.

    Args:
        boxes: ``Tensor[P, 5]`` ``(x, y, length, width, yaw)``, length along the heading.

    Returns:
        ``Tensor[P, 4, 2]``.
    """
    x, y, length, width, yaw = boxes.unbind(1)
    half = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]], dtype=boxes.dtype, device=boxes.device)
    local = half * torch.stack([length, width], dim=1)[:, None, :] / 2  # [P, 4, 2]
    cos, sin = torch.cos(yaw)[:, None], torch.sin(yaw)[:, None]
    return torch.stack([x[:, None] + cos * local[..., 0] - sin * local[..., 1],
                        y[:, None] + sin * local[..., 0] + cos * local[..., 1]], dim=2)


def _inside(points: Tensor, boxes: Tensor) -> Tensor:
    """``points [P, N, 2]`` inside (or on) ``boxes [P, 5]`` -> ``Tensor[P, N]`` bool."""
    dx = points[..., 0] - boxes[:, None, 0]
    dy = points[..., 1] - boxes[:, None, 1]
    cos, sin = torch.cos(boxes[:, None, 4]), torch.sin(boxes[:, None, 4])
    along = cos * dx + sin * dy
    across = -sin * dx + cos * dy
    return (along.abs() <= boxes[:, None, 2] / 2 + _EPS) & (across.abs() <= boxes[:, None, 3] / 2 + _EPS)


def _edge_crossings(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Crossings of every edge of ``a [P, 4, 2]`` with every edge of ``b [P, 4, 2]``.

    Returns:
        ``(points [P, 16, 2], valid [P, 16])``; parallel edges never cross.
    """
    p, r = a[:, :, None, :], (a.roll(-1, dims=1) - a)[:, :, None, :]  # [P, 4, 1, 2]
    q, s = b[:, None, :, :], (b.roll(-1, dims=1) - b)[:, None, :, :]  # [P, 1, 4, 2]
    denom = r[..., 0] * s[..., 1] - r[..., 1] * s[..., 0]  # [P, 4, 4]
    qp = q - p
    safe = torch.where(denom.abs() > _EPS, denom, torch.ones_like(denom))
    t = (qp[..., 0] * s[..., 1] - qp[..., 1] * s[..., 0]) / safe
    u = (qp[..., 0] * r[..., 1] - qp[..., 1] * r[..., 0]) / safe
    valid = (denom.abs() > _EPS) & (t >= -_EPS) & (t <= 1 + _EPS) & (u >= -_EPS) & (u <= 1 + _EPS)
    points = p + t[..., None] * r
    return points.reshape(a.shape[0], 16, 2), valid.reshape(a.shape[0], 16)


def intersection_area(a: Tensor, b: Tensor) -> Tensor:
    """BEV intersection area of box pairs ``a [P, 5]``, ``b [P, 5]`` -> ``Tensor[P]``."""
    corners_a, corners_b = box_corners(a), box_corners(b)
    crossings, crossing_valid = _edge_crossings(corners_a, corners_b)
    points = torch.cat([corners_a, corners_b, crossings], dim=1)  # [P, 24, 2]
    valid = torch.cat([_inside(corners_a, b), _inside(corners_b, a), crossing_valid], dim=1)  # [P, 24]
    count = valid.sum(dim=1)  # [P]
    weights = valid.to(points.dtype)
    centre = (points * weights[..., None]).sum(dim=1) / count.clamp(min=1)[:, None].to(points.dtype)  # [P, 2]
    angle = torch.atan2(points[..., 1] - centre[:, None, 1], points[..., 0] - centre[:, None, 0])
    angle = torch.where(valid, angle, torch.full_like(angle, 10.0))  # invalid ones sort last
    order = torch.argsort(angle, dim=1)
    ring = torch.gather(points, 1, order[..., None].expand(-1, -1, 2))  # [P, 24, 2] valid first, by angle
    slot = torch.arange(points.shape[1], device=points.device)
    following = torch.where(slot[None, :] + 1 < count[:, None], slot[None, :] + 1, 0)  # close the ring
    nxt = torch.gather(ring, 1, following[..., None].expand(-1, -1, 2))
    cross = ring[..., 0] * nxt[..., 1] - ring[..., 1] * nxt[..., 0]
    area = 0.5 * torch.where(slot[None, :] < count[:, None], cross, torch.zeros_like(cross)).sum(dim=1).abs()
    return torch.where(count >= 3, area, torch.zeros_like(area))


def bev_iou_pairs(a: Tensor, b: Tensor, *, min_area: float = 1e-6, min_union_area: float = 0.01) -> Tensor:
    """IoU of box pairs with the rules of Autoware's ``object_recognition_utils::get2dIoU``.

    0 when the intersection is below ``min_area`` (m²) or the union below ``min_union_area``;
    else ``min(1, intersection / union)``.

    Args:
        a, b: ``Tensor[P, 5]`` ``(x, y, length, width, yaw)``; computed in their dtype (use float64).

    Returns:
        ``Tensor[P]``.
    """
    inter = intersection_area(a, b)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    iou = torch.clamp(inter / torch.where(union > 0, union, torch.ones_like(union)), max=1.0)
    return torch.where((inter < min_area) | (union < min_union_area), torch.zeros_like(iou), iou)
