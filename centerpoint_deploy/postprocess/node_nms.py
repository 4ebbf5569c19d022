"""The two NMS of Autoware's ``autoware_lidar_centerpoint`` node, in torch, batched, on any device.

On each batch item's boxes in the decode's order (descending score, ties in cell order):

1. circle NMS (``circle_nms_kernel.cu``): greedy over that order and class-agnostic; a later box
   is suppressed by a kept earlier one when ``dx**2 + dy**2 < distance**2`` (float32, strict);
2. IoU-BEV NMS (``non_maximum_suppression.cpp``): box ``i`` is dropped when some earlier
   circle-NMS survivor ``j`` (dropped or not: the rule is not greedy) has ``IoU > threshold``,
   where a pair counts only if its squared centre distance is ``<= search_distance**2``
   (float64) and it is not a pedestrian facing another label.

Both run in fixed shapes (a fixed number of greedy rounds, a fixed budget of IoU pairs), so they
can be recorded in a CUDA graph with the decode and nothing is read on the host; each reports
per item whether its result is exact (the rounds converged, the pairs fit). With ``rounds=None``
and ``pair_budget=None`` they are exact by construction (and read on the host as they go).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from centerpoint_deploy.postprocess.nms import greedy_suppression
from centerpoint_deploy.postprocess.node_params import semantic_label
from centerpoint_deploy.postprocess.rotated_iou import bev_iou_pairs

#: Autoware's PEDESTRIAN label (``node_params.AUTOWARE_LABELS``).
_PEDESTRIAN = semantic_label("pedestrian")
#: Box columns of a BEV footprint: x, y, length, width, yaw.
_FOOTPRINT = (0, 1, 3, 4, 6)


@dataclass
class NodeBoxes:
    """Boxes of a batch as the node's decode leaves them: per item by descending score (ties in
    cell order), padded to a common length ``M``.

    Attributes:
        boxes: ``Tensor[B, M, 9]`` float32 ``[x, y, z, l, w, h, yaw, vx, vy]``, yaw as the node
            publishes it (``-atan2(rot0, rot1) - pi/2``, wrapped into ``[-pi, pi)``).
        scores: ``Tensor[B, M]`` float32.
        labels: ``Tensor[B, M]`` int64, index into ``config.class_names``.
        cells: ``Tensor[B, M]`` int64, flat cell index ``yi * w + xi``.
        valid: ``Tensor[B, M]`` bool, the rows that are boxes (the others pad an item).
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    cells: Tensor
    valid: Tensor

    def item(self, index: int) -> "NodeBoxes":
        """Item ``index`` alone (a batch of one), its padding dropped."""
        rows = self.valid[index]
        return NodeBoxes(self.boxes[index][rows][None], self.scores[index][rows][None],
                         self.labels[index][rows][None], self.cells[index][rows][None], self.valid[index][rows][None])


def circle_nms_node(boxes: NodeBoxes, distance: float, rounds: int | None = None) -> tuple[Tensor, Tensor]:
    """The node's ``circleNMS`` on each item.

    Args:
        boxes: the decode's boxes.
        distance: ``circle_nms_dist_threshold`` (m).
        rounds: greedy rounds (``None``: until nothing changes; see
            :func:`~centerpoint_deploy.postprocess.nms.greedy_suppression`).

    Returns:
        ``(keep [B, M] bool, converged [B] bool)``.
    """
    xy = boxes.boxes[..., :2].to(torch.float32)
    dx = xy[:, :, None, 0] - xy[:, None, :, 0]  # [B, j, i]
    dy = xy[:, :, None, 1] - xy[:, None, :, 1]
    close = (dx * dx + dy * dy < _float32_square(distance)) & _earlier(xy.shape[1], xy.device)
    return greedy_suppression(close, boxes.valid, rounds)


@functools.lru_cache(maxsize=16)
def _float32_square(value: float) -> float:
    """``value ** 2`` rounded as float32 (the node's ``dist_thresh * dist_thresh`` in float)."""
    return float(np.float32(value) * np.float32(value))


def _earlier(count: int, device: torch.device) -> Tensor:
    """``Tensor[count, count]`` bool, ``[j, i]`` true where ``j < i``."""
    return torch.ones(count, count, dtype=torch.bool, device=device).triu(diagonal=1)


def iou_bev_nms_node(boxes: NodeBoxes, survivors: Tensor, class_names: tuple[str, ...], search_distance: float,
                     iou_threshold: float, pair_budget: int | None = None) -> tuple[Tensor, Tensor]:
    """The node's ``NonMaximumSuppression::apply`` on each item's circle-NMS survivors.

    Args:
        boxes: the decode's boxes.
        survivors: ``Tensor[B, M]`` bool, the circle NMS's output.
        class_names: the model's classes (for the pedestrian rule).
        search_distance: ``iou_nms_search_distance_2d`` (m).
        iou_threshold: ``iou_nms_threshold``.
        pair_budget: most pairs an item compares (in fixed shapes); ``None``: every pair.

    Returns:
        ``(keep [B, M] bool, fits [B] bool)``: the survivors not dropped, and where every
        counted pair was compared (always with ``pair_budget=None``).
    """
    batch, rows = survivors.shape
    table = boxes.boxes.to(torch.float64)
    x, y = table[..., 0], table[..., 1]
    dx = x[:, :, None] - x[:, None, :]  # [B, j, i]
    dy = y[:, :, None] - y[:, None, :]
    dist_sq = dx * dx + dy * dy
    semantic = _semantic_labels(class_names, boxes.labels.device)[boxes.labels]
    a, b = semantic[:, :, None], semantic[:, None, :]
    counted = ~((a != b) & ((a == _PEDESTRIAN) | (b == _PEDESTRIAN)))
    # pairs farther apart than their circumscribed circles cannot overlap (IoU 0): skip them
    radius = torch.sqrt(table[..., 3] ** 2 + table[..., 4] ** 2) / 2
    reach = radius[:, :, None] + radius[:, None, :]
    counted &= ~(dist_sq > reach * reach)  # NaN sizes stay in: their IoU is computed (and is 0)
    pairs = ((dist_sq <= float(search_distance) ** 2) & counted & _earlier(rows, survivors.device)
             & survivors[:, :, None] & survivors[:, None, :])  # [B, j, i]
    item, src, dst, present, fits = _pair_indices(pairs, pair_budget)
    footprint = table[..., list(_FOOTPRINT)]
    drop = (bev_iou_pairs(footprint[item, src], footprint[item, dst]) > iou_threshold) & present
    dropped = torch.zeros(batch * rows, dtype=torch.int32, device=survivors.device)
    dropped.scatter_add_(0, item * rows + dst, drop.to(torch.int32))
    return survivors & (dropped.reshape(batch, rows) == 0), fits


def _pair_indices(pairs: Tensor, budget: int | None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(item, src, dst, present, fits)`` of the true entries of ``pairs [B, M, M]``.

    With a budget, ``budget`` entries per item in fixed shapes (``present`` marks the real ones;
    ``fits [B]`` whether an item had no more); without one, exactly the true entries."""
    batch, rows = pairs.shape[:2]
    if budget is None:
        item, src, dst = pairs.nonzero(as_tuple=True)
        present = torch.ones(item.shape, dtype=torch.bool, device=pairs.device)
        return item, src, dst, present, torch.ones(batch, dtype=torch.bool, device=pairs.device)
    flat = pairs.reshape(batch, rows * rows).to(torch.int32)
    values, index = flat.topk(min(budget, rows * rows), dim=1)  # [B, E]: the true entries first
    fits = flat.sum(dim=1) <= values.shape[1]
    item = torch.arange(batch, device=pairs.device)[:, None].expand_as(index)
    return item.flatten(), (index // rows).flatten(), (index % rows).flatten(), (values > 0).flatten(), fits


@functools.lru_cache(maxsize=16)
def _semantic_labels(class_names: tuple[str, ...], device: torch.device) -> Tensor:
    """``Tensor[C]`` int64: Autoware's label of each class, on ``device`` (made once; read only)."""
    with torch.inference_mode(False):
        return torch.tensor([semantic_label(name) for name in class_names], dtype=torch.int64, device=device)
