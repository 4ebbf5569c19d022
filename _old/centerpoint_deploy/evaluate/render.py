"""Plots of evaluation results: precision-recall curves and bird's-eye views of frames.

matplotlib runs with the non-interactive Agg canvas (no display needed); figures are closed
after saving.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from centerpoint_deploy.evaluate.data_classes import DetectionMetrics
from centerpoint_deploy.figures import save_figure

#: Colour of ground-truth boxes; backends take matplotlib's tab10 cycle in order.
GT_COLOR = "black"
BACKEND_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
#: Line style of each backend in order (matplotlib dash patterns), so overlapping outlines stay apart.
BACKEND_STYLES = ("solid", (0, (5, 2)), (0, (1, 1.5)), (0, (6, 2, 1, 2)))


def render_pr_curves(metrics: DetectionMetrics, path: str | Path, title: str = "") -> Path:
    """One panel per class: precision over recall at every distance threshold (AP in the legend)."""
    names = list(metrics.curves)
    cols = min(3, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows))
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        for th, curves in metrics.curves[name].items():
            ax.plot(curves.recall, curves.precision, label=f"{th:g} m: AP {metrics.label_aps[name][th]:.3f}")
        ax.axvline(metrics.config.min_recall, color="grey", lw=0.8, ls=":")
        ax.axhline(metrics.config.min_precision, color="grey", lw=0.8, ls=":")
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
               title=f"{name} (#GT {metrics.num_gt.get(name, '?')})")
        ax.legend(fontsize=7, loc="lower left")
    if title:
        fig.suptitle(title)
    fig.subplots_adjust(left=0.07, right=0.97, bottom=0.08, top=0.9, hspace=0.45, wspace=0.3)
    return save_figure(fig, path)


def box_corners_bev(boxes: np.ndarray) -> np.ndarray:
    """``ndarray[K, 4, 2]`` BEV corners (metres) of ``boxes [K, >=7]`` ``[x, y, z, l, w, h, yaw, ...]``,
    counter-clockwise from front-left."""
    half = np.array([[0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]])        # [4, 2] in (l, w) units
    local = half[None] * boxes[:, None, 3:5]                                       # [K, 4, 2]
    cos, sin = np.cos(boxes[:, 6])[:, None], np.sin(boxes[:, 6])[:, None]
    x = local[..., 0] * cos - local[..., 1] * sin + boxes[:, None, 0]
    y = local[..., 0] * sin + local[..., 1] * cos + boxes[:, None, 1]
    return np.stack([x, y], axis=-1)


def _box_segments(boxes: np.ndarray) -> np.ndarray:
    """``ndarray[K * 5, 2, 2]`` line segments: the four edges and a centre-to-front heading tick."""
    corners = box_corners_bev(boxes)                                               # [K, 4, 2]
    edges = np.stack([corners, np.roll(corners, -1, axis=1)], axis=2)              # [K, 4, 2, 2]
    front = corners[:, [0, 3]].mean(axis=1)                                        # [K, 2]
    heading = np.stack([boxes[:, :2], front], axis=1)[:, None]                     # [K, 1, 2, 2]
    return np.concatenate([edges, heading], axis=1).reshape(-1, 2, 2)


def render_bev(points: np.ndarray, gt_boxes: np.ndarray, preds_by_backend: Mapping[str, np.ndarray],
               path: str | Path, *, gt_num_points: np.ndarray | None = None, extent: float | None = None,
               title: str = "") -> Path:
    """Bird's-eye view of one frame: points, GT boxes and each backend's predicted boxes.

    Only boxes whose centre lies in the view are drawn, and the legend counts exactly those.
    Ground truth with no LiDAR point inside is drawn dashed and counted apart (no detector
    can see it, so it is no miss of the backends). Backends are drawn in order with
    decreasing line widths and their own line styles, so a box two backends agree on shows
    both outlines instead of one hiding the other.

    Args:
        points: ``ndarray[N, >=2]`` LiDAR points (x, y used), metres.
        gt_boxes: ``ndarray[M, 9]`` ground truth ``[x, y, z, l, w, h, yaw, vx, vy]``.
        preds_by_backend: backend name -> ``ndarray[K, 9]`` predicted boxes (already filtered
            by score as the caller wants them shown).
        path: PNG to write.
        gt_num_points: ``ndarray[M]`` LiDAR points inside each GT box (``-1`` unknown);
            ``None``: all treated as seen.
        extent: half width of the square view in metres around the LiDAR origin; default
            fits every box with a 5 m margin (at least 20 m).
        title: figure title.
    """
    all_boxes = [gt_boxes[:, :7]] + [b[:, :7] for b in preds_by_backend.values()]
    if extent is None:
        centres = np.concatenate([b[:, :2] for b in all_boxes])
        extent = max(20.0, float(np.abs(centres).max()) + 5.0 if centres.size else 20.0)

    def in_view(boxes: np.ndarray) -> np.ndarray:
        return boxes[(np.abs(boxes[:, 0]) <= extent) & (np.abs(boxes[:, 1]) <= extent)]

    empty = np.zeros(len(gt_boxes), dtype=bool) if gt_num_points is None else np.asarray(gt_num_points) == 0
    fig = Figure(figsize=(8, 8))
    ax = fig.add_subplot(1, 1, 1)
    inside = (np.abs(points[:, 0]) <= extent) & (np.abs(points[:, 1]) <= extent)
    ax.scatter(points[inside, 0], points[inside, 1], s=0.2, c="0.6", linewidths=0, rasterized=True)
    count = len(preds_by_backend)
    layers = [("ground truth", in_view(gt_boxes[~empty]), GT_COLOR, 1.2 + 0.8 * count, "solid"),
              ("ground truth without points", in_view(gt_boxes[empty]), "0.45", 1.0, (0, (2, 2)))]
    layers += [(name, in_view(boxes), BACKEND_COLORS[i % len(BACKEND_COLORS)], 0.6 + 0.8 * (count - i),
                BACKEND_STYLES[i % len(BACKEND_STYLES)]) for i, (name, boxes) in enumerate(preds_by_backend.items())]
    for label, boxes, color, width, style in layers:
        if label == "ground truth without points" and not len(boxes):
            continue
        ax.add_collection(LineCollection(_box_segments(boxes), colors=color, linewidths=width, linestyles=style,
                                         label=f"{label} ({len(boxes)} in view)"))
    ax.set(xlim=(-extent, extent), ylim=(-extent, extent), aspect="equal", xlabel="x (m)", ylabel="y (m)")
    ax.legend(loc="upper right", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9, parse_math=False)  # titles hold data (sample tokens)
    fig.subplots_adjust(left=0.09, right=0.97, bottom=0.07, top=0.95)
    return save_figure(fig, path)
