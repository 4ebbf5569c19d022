"""BEV IoU of rotated boxes, vectorized over pairs in torch (no per-pair Python), on any device.

The intersection of two rectangles is a convex polygon whose vertices are the corners of
each rectangle that lie inside the other and the crossings of their edges (at most 8 of the
24 candidates). The candidates are sorted by angle around their mean and the area follows
from the shoelace formula, all with fixed shapes per pair (so it can be recorded in a CUDA graph).
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Tolerance (m) of the point-in-rectangle and segment-crossing tests (float64 arithmetic).
_EPS = 1e-9


def box_corners(boxes: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Corners of BEV boxes, counter-clockwise.

    Args:
        boxes: ``Tensor[P, 5]`` ``(x, y, length, width, yaw)``, length along the heading.
        cos, sin: ``Tensor[P]`` of the yaw.

    Returns:
        ``Tensor[P, 4, 2]``.
    """
    half_length, half_width = boxes[:, 2] / 2, boxes[:, 3] / 2
    along = torch.stack([half_length, -half_length, -half_length, half_length], dim=1)  # [P, 4], counter-clockwise
    across = torch.stack([half_width, half_width, -half_width, -half_width], dim=1)
    cos, sin = cos[:, None], sin[:, None]
    return torch.stack([boxes[:, None, 0] + cos * along - sin * across,
                        boxes[:, None, 1] + sin * along + cos * across], dim=2)


def _inside(points: Tensor, boxes: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """``points [P, N, 2]`` inside (or on) ``boxes [P, 5]`` (yaw ``cos``, ``sin`` ``[P]``) -> ``Tensor[P, N]`` bool."""
    dx = points[..., 0] - boxes[:, None, 0]
    dy = points[..., 1] - boxes[:, None, 1]
    cos, sin = cos[:, None], sin[:, None]
    along = cos * dx + sin * dy
    across = -sin * dx + cos * dy
    return (along.abs() <= boxes[:, None, 2] / 2 + _EPS) & (across.abs() <= boxes[:, None, 3] / 2 + _EPS)


def _edge_crossings(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Crossings of every edge of ``a [P, 4, 2]`` with every edge of ``b [P, 4, 2]``.

    Returns:
        ``(points [P, 16, 2], valid [P, 16])``; parallel edges never cross.
    """
    p, r = a[:, :, None, :], (torch.roll(a, -1, dims=1) - a)[:, :, None, :]  # [P, 4, 1, 2]
    q, s = b[:, None, :, :], (torch.roll(b, -1, dims=1) - b)[:, None, :, :]  # [P, 1, 4, 2]
    denom = r[..., 0] * s[..., 1] - r[..., 1] * s[..., 0]  # [P, 4, 4]
    qp = q - p
    parallel = ~(denom.abs() > _EPS)
    safe = torch.where(parallel, torch.ones_like(denom), denom)
    t = (qp[..., 0] * s[..., 1] - qp[..., 1] * s[..., 0]) / safe
    u = (qp[..., 0] * r[..., 1] - qp[..., 1] * r[..., 0]) / safe
    valid = ~parallel & (t >= -_EPS) & (t <= 1 + _EPS) & (u >= -_EPS) & (u <= 1 + _EPS)
    points = p + t[..., None] * r
    return points.reshape(len(a), 16, 2), valid.reshape(len(a), 16)


def intersection_area(a: Tensor, b: Tensor) -> Tensor:
    """BEV intersection area of box pairs ``a [P, 5]``, ``b [P, 5]`` -> ``Tensor[P]``."""
    pairs = len(a)
    both = torch.cat([a, b])  # [2P, 5]: both boxes of every pair at once (half the kernels, same values)
    cos, sin = torch.cos(both[:, 4]), torch.sin(both[:, 4])
    corners = box_corners(both, cos, sin)  # [2P, 4, 2]
    corners_a, corners_b = corners[:pairs], corners[pairs:]
    crossings, crossing_valid = _edge_crossings(corners_a, corners_b)
    points = torch.cat([corners_a, corners_b, crossings], dim=1)  # [P, 24, 2]
    # a's corners in b and b's corners in a: each box's corners against the other box of its pair
    inside = _inside(corners, both.roll(pairs, 0), cos.roll(pairs, 0), sin.roll(pairs, 0))  # [2P, 4]
    valid = torch.cat([inside[:pairs], inside[pairs:], crossing_valid], dim=1)  # [P, 24]
    count = valid.sum(dim=1)  # [P]
    centre = (points * valid[..., None]).sum(dim=1) / count.clamp(min=1)[:, None]  # [P, 2]
    angle = torch.atan2(points[..., 1] - centre[:, None, 1], points[..., 0] - centre[:, None, 0])
    angle = torch.where(valid, angle, torch.full_like(angle, 10.0))  # invalid ones sort last
    order = torch.argsort(angle, dim=1)
    ring = torch.take_along_dim(points, order[..., None], dim=1)  # [P, 24, 2] valid first, by angle
    slot = torch.arange(points.shape[1], device=a.device)
    following = torch.where(slot[None, :] + 1 < count[:, None], slot[None, :] + 1, 0)  # close the ring
    nxt = torch.take_along_dim(ring, following[..., None], dim=1)
    cross = ring[..., 0] * nxt[..., 1] - ring[..., 1] * nxt[..., 0]
    area = 0.5 * torch.where(slot[None, :] < count[:, None], cross, torch.zeros_like(cross)).sum(dim=1).abs()
    return torch.where(count >= 3, area, torch.zeros_like(area))


def bev_iou_pairs(a: Tensor, b: Tensor, *, min_area: float = 1e-6, min_union_area: float = 0.01) -> Tensor:
    """IoU of box pairs with the rules of Autoware's ``object_recognition_utils::get2dIoU``.

    0 when the intersection is below ``min_area`` (m²) or the union below ``min_union_area``;
    else ``min(1, intersection / union)``.

    Args:
        a, b: ``Tensor[P, 5]`` ``(x, y, length, width, yaw)``, computed in float64.

    Returns:
        ``Tensor[P]`` float64.
    """
    a, b = a.to(torch.float64), b.to(torch.float64)
    inter = intersection_area(a, b)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    iou = torch.clamp(inter / torch.where(union > 0, union, torch.ones_like(union)), max=1.0)  # NaN sizes: NaN
    iou = torch.where(torch.isnan(iou), torch.zeros_like(iou), iou)  # then IoU 0
    return torch.where((inter < min_area) | (union < min_union_area), torch.zeros_like(iou), iou)
