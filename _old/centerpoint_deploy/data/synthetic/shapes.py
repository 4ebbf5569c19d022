"""Asymmetric object shapes: every agent is a few upright boxes ("parts") sharing its heading.

A shape lists its parts as fractions of the agent's box, in the agent's frame (x forward
along the heading, y to the left, z up from the ground): ``[x_lo, x_hi, y_lo, y_hi, z_lo, z_hi]``
with x, y in [-0.5, 0.5] and z in [0, 1]. The union of a shape's parts spans exactly
``[-0.5, 0.5] x [-0.5, 0.5] x [0, 1]``, so the annotated box (the agent's l, w, h and centre)
is the tight box around the parts. Parts differ front to back (a car's cabin sits behind its
bonnet, a truck's cab is lower than its cargo box, a walker's leading leg and head are ahead
of the torso), which is what makes the heading observable from the points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Shape:
    """Parts of one kind of object.

    Attributes:
        name: what it is.
        parts: ``[x_lo, x_hi, y_lo, y_hi, z_lo, z_hi]`` of each part, fractions of l, w, h.
        shine: reflectivity factor of each part (glass is dark, a licence plate bright).
    """

    name: str
    parts: tuple[tuple[float, float, float, float, float, float], ...]
    shine: tuple[float, ...]


SHAPES: tuple[Shape, ...] = (
    Shape("car", (
        (-0.50, 0.50, -0.50, 0.50, 0.00, 0.55),  # body, bonnet to boot
        (-0.38, 0.12, -0.44, 0.44, 0.55, 1.00),  # cabin, set back from the front; windows
    ), (1.0, 0.35)),
    Shape("truck", (
        (0.30, 0.50, -0.48, 0.48, 0.00, 0.78),    # cab at the front, lower than the cargo box
        (-0.50, 0.26, -0.50, 0.50, 0.28, 1.00),   # cargo box behind a gap
        (-0.46, 0.30, -0.38, 0.38, 0.00, 0.28),   # chassis and wheels under the cargo box
    ), (1.0, 0.9, 0.5)),
    Shape("bus", (
        (-0.50, 0.47, -0.50, 0.50, 0.00, 0.92),  # body
        (0.47, 0.50, -0.44, 0.44, 0.05, 0.80),   # lower, narrower nose: a rounded-ish front
        (-0.40, 0.05, -0.30, 0.30, 0.92, 1.00),  # roof air-conditioning unit, rear half
    ), (1.0, 0.45, 0.9)),
    Shape("bicycle with rider", (
        (-0.50, 0.50, -0.15, 0.15, 0.00, 0.50),  # wheels and frame
        (-0.30, 0.10, -0.50, 0.50, 0.50, 0.85),  # rider's torso, over the saddle (behind the centre)
        (-0.05, 0.22, -0.25, 0.25, 0.85, 1.00),  # rider's head, leaning forward
        (0.30, 0.42, -0.50, 0.50, 0.45, 0.55),   # handlebar
    ), (1.0, 0.5, 0.4, 1.2)),
    Shape("bicycle without rider", (
        (-0.50, 0.50, -0.15, 0.15, 0.00, 0.72),  # wheels and frame
        (-0.30, -0.12, -0.18, 0.18, 0.72, 0.82),  # saddle, towards the back
        (0.30, 0.42, -0.50, 0.50, 0.82, 1.00),   # handlebar, at the front
    ), (1.0, 0.6, 1.2)),
    Shape("walking pedestrian", (
        (-0.50, 0.15, -0.50, 0.50, 0.50, 0.86),  # torso (with a backpack behind)
        (-0.10, 0.22, -0.22, 0.22, 0.86, 1.00),  # head, ahead of the torso
        (0.05, 0.50, 0.05, 0.40, 0.00, 0.50),    # leading leg, forward
        (-0.40, -0.05, -0.40, -0.05, 0.00, 0.50),  # trailing leg
    ), (1.0, 0.8, 0.9, 0.9)),
    Shape("standing pedestrian", (
        (-0.50, 0.10, -0.50, 0.50, 0.48, 0.86),  # torso (with a backpack behind)
        (-0.15, 0.20, -0.22, 0.22, 0.86, 1.00),  # head
        (-0.30, 0.05, -0.40, 0.40, 0.00, 0.48),  # legs together
        (0.10, 0.50, -0.30, 0.30, 0.55, 0.70),   # hands / bag in front
    ), (1.0, 0.8, 0.9, 1.1)),
)
CAR_SHAPE, TRUCK_SHAPE, BUS_SHAPE, RIDDEN_BICYCLE_SHAPE, PARKED_BICYCLE_SHAPE, WALKER_SHAPE, STANDER_SHAPE = range(7)

_PARTS = np.array([p for s in SHAPES for p in s.parts], dtype=np.float64)  # [K, 6]
_SHINE = np.array([f for s in SHAPES for f in s.shine], dtype=np.float64)  # [K]
_COUNTS = np.array([len(s.parts) for s in SHAPES], dtype=np.int64)
_STARTS = np.cumsum(_COUNTS) - _COUNTS


def shape_extent(shape: Shape) -> np.ndarray:
    """``[x_lo, x_hi, y_lo, y_hi, z_lo, z_hi]`` of the union of ``shape``'s parts (fractions)."""
    parts = np.asarray(shape.parts)
    return np.array([parts[:, 0].min(), parts[:, 1].max(), parts[:, 2].min(), parts[:, 3].max(),
                     parts[:, 4].min(), parts[:, 5].max()])


def agent_parts(boxes: np.ndarray, shape_index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Part boxes of agents.

    Args:
        boxes: ``[A, 7]`` agent boxes ``[x, y, z, l, w, h, yaw]`` (m, rad; z at the centre), any frame.
        shape_index: ``[A]`` index into :data:`SHAPES` of each agent.

    Returns:
        ``(parts [P, 7] boxes in the same frame, owner [P] agent index of each part,
        shine [P] reflectivity factor of each part)``; parts grouped by agent, in agent order.
    """
    counts = _COUNTS[shape_index]
    owner = np.repeat(np.arange(boxes.shape[0]), counts)
    row = np.repeat(_STARTS[shape_index] - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
    frac = _PARTS[row]
    size = boxes[owner, 3:6]
    local = np.column_stack([0.5 * (frac[:, 0] + frac[:, 1]), 0.5 * (frac[:, 2] + frac[:, 3]),
                             0.5 * (frac[:, 4] + frac[:, 5]) - 0.5]) * size  # offset from the agent's centre
    yaw = boxes[owner, 6]
    cos, sin = np.cos(yaw), np.sin(yaw)
    parts = np.column_stack([
        boxes[owner, 0] + local[:, 0] * cos - local[:, 1] * sin,
        boxes[owner, 1] + local[:, 0] * sin + local[:, 1] * cos,
        boxes[owner, 2] + local[:, 2],
        (frac[:, 1] - frac[:, 0]) * size[:, 0],
        (frac[:, 3] - frac[:, 2]) * size[:, 1],
        (frac[:, 5] - frac[:, 4]) * size[:, 2],
        yaw,
    ])
    return parts, owner, _SHINE[row]
