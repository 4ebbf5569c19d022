"""The two NMS of Autoware's ``autoware_lidar_centerpoint`` node, in torch, batched, on any device.

On each batch item's boxes in the decode's order (descending score, ties in cell order):

1. circle NMS (``circle_nms_kernel.cu``): greedy over that order and class-agnostic; a later box
   is suppressed by a kept earlier one when ``dx**2 + dy**2 < distance**2`` (float32, strict);
2. IoU-BEV NMS (``non_maximum_suppression.cpp``): box ``i`` is dropped when some earlier
   circle-NMS survivor ``j`` (dropped or not: the rule is not greedy) has ``IoU > threshold``,
   where a pair counts only if its squared centre distance is ``<= search_distance**2``
   (float64) and it is not a pedestrian facing another label.

On a GPU both run in fixed shapes: each item's ``M x M`` pairs as a mask, a fixed number of
greedy rounds, a fixed budget of IoU pairs, so that they can be recorded in a CUDA graph with
the decode and nothing is read on the host; each reports per item whether its result is exact
(the rounds converged, the pairs fit). Exactly (``rounds=None``, ``pair_budget=None``) they build
only the close pairs, in blocks of rows (memory bounded for any number of boxes), and iterate
to the fixed point, reading on the host as they go. Both forms test a pair with the same
criterion, a function of the two boxes' flat indices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from centerpoint_deploy.device import cached_constant
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
        rounds: greedy rounds in fixed shapes (see
            :func:`~centerpoint_deploy.postprocess.nms.greedy_suppression`); ``None``: exactly.

    Returns:
        ``(keep [B, M] bool, converged [B] bool)``.
    """
    xy = boxes.boxes[..., :2].to(torch.float32).reshape(-1, 2)
    limit = _float32_square(distance)

    def close(j: Tensor, i: Tensor) -> Tensor:
        d = xy[j] - xy[i]
        return d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1] < limit

    if rounds is None:
        src, dst = _close_pairs(boxes.valid, close, xy[:, 0], float(distance))
        return _sparse_greedy(boxes.valid, src, dst), _all_true(boxes.valid)
    return greedy_suppression(_dense_pairs(boxes.valid, close), boxes.valid, rounds)


def _float32_square(value: float) -> float:
    """``value ** 2`` rounded as float32 (the node's ``dist_thresh * dist_thresh`` in float)."""
    return float(np.float32(value) * np.float32(value))


def iou_bev_nms_node(boxes: NodeBoxes, survivors: Tensor, class_names: tuple[str, ...], search_distance: float,
                     iou_threshold: float, pair_budget: int | None = None) -> tuple[Tensor, Tensor]:
    """The node's ``NonMaximumSuppression::apply`` on each item's circle-NMS survivors.

    Args:
        boxes: the decode's boxes.
        survivors: ``Tensor[B, M]`` bool, the circle NMS's output.
        class_names: the model's classes (for the pedestrian rule).
        search_distance: ``iou_nms_search_distance_2d`` (m).
        iou_threshold: ``iou_nms_threshold``.
        pair_budget: most pairs an item compares, in fixed shapes; ``None``: every pair, exactly.

    Returns:
        ``(keep [B, M] bool, fits [B] bool)``: the survivors not dropped, and where every
        counted pair was compared (always, exactly).
    """
    batch, rows = survivors.shape
    table = boxes.boxes.to(torch.float64).reshape(-1, 9)
    semantic = cached_constant(tuple(semantic_label(name) for name in class_names), torch.int64,
                               boxes.labels.device)[boxes.labels.flatten()]
    radius = torch.sqrt(table[:, 3] ** 2 + table[:, 4] ** 2) / 2  # of the circumscribed circles
    search_sq = float(search_distance) ** 2

    def counted(j: Tensor, i: Tensor) -> Tensor:
        d = table[j, :2] - table[i, :2]
        dist_sq = d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1]
        a, b = semantic[j], semantic[i]
        reach = radius[j] + radius[i]
        return ((dist_sq <= search_sq) & ~((a != b) & ((a == _PEDESTRIAN) | (b == _PEDESTRIAN)))
                & ~(dist_sq > reach * reach))  # farther apart than the circles: IoU 0; NaN sizes stay in (IoU 0)

    if pair_budget is None:
        src, dst = _close_pairs(survivors, counted, table[:, 0], float(search_distance))
        present, fits = torch.ones(src.shape, dtype=torch.bool, device=src.device), _all_true(survivors)
    else:
        src, dst, present, fits = _budgeted_pairs(_dense_pairs(survivors, counted), pair_budget)
    footprint = torch.stack([table[:, column] for column in _FOOTPRINT], dim=1)  # no host index: capturable
    drop = (bev_iou_pairs(footprint[src], footprint[dst]) > iou_threshold) & present
    dropped = torch.zeros(batch * rows, dtype=torch.int32, device=survivors.device)
    dropped.scatter_add_(0, dst, drop.to(torch.int32))
    return survivors & (dropped.reshape(batch, rows) == 0), fits


#: A pair criterion: flat box indices ``j`` (earlier) and ``i`` (later), broadcast -> bool.
Criterion = Callable[[Tensor, Tensor], Tensor]
#: Most candidate pairs tested at once while building close pairs exactly (bounds memory).
_PAIR_BLOCK = 1 << 20


def _dense_pairs(alive: Tensor, criterion: Criterion) -> Tensor:
    """``Tensor[B, M, M]`` bool, ``[b, j, i]``: ``j < i``, both alive, ``criterion`` true (fixed shapes)."""
    batch, rows = alive.shape
    flat = (torch.arange(batch, device=alive.device)[:, None] * rows
            + torch.arange(rows, device=alive.device)[None, :])  # [B, M]
    earlier = torch.ones(rows, rows, dtype=torch.bool, device=alive.device).triu(diagonal=1)
    return criterion(flat[:, :, None], flat[:, None, :]) & earlier & alive[:, :, None] & alive[:, None, :]


def _close_pairs(alive: Tensor, criterion: Criterion, x: Tensor, reach: float) -> tuple[Tensor, Tensor]:
    """``(src, dst)`` flat indices of every pair of alive boxes of one item with ``src`` earlier and
    ``criterion`` true, where ``criterion`` implies ``|x[src] - x[dst]| <= reach``.

    Each item's boxes sorted by ``x``: a box's candidates are the window of boxes within ``reach``
    of it along ``x`` (two binary searches), tested :data:`_PAIR_BLOCK` candidates at a time, so
    memory stays bounded and the work grows with the boxes' density, not with their number squared.
    Boxes with a non-finite ``x`` pair with nothing (no criterion holds for them).
    """
    rows = alive.shape[1]
    margin = reach * (1 + 1e-9) + 1e-9  # a pair at exactly ``reach`` stays inside its window
    sources, targets = [x.new_zeros(0, dtype=torch.int64)], [x.new_zeros(0, dtype=torch.int64)]
    for item in range(alive.shape[0]):
        index = alive[item].nonzero().flatten() + item * rows  # the item's boxes, by rank
        index = index[torch.isfinite(x[index])]
        position = x[index].to(torch.float64)
        order = torch.argsort(position, stable=True)
        index, position = index[order], position[order]
        low = torch.searchsorted(position, position - margin)
        high = torch.searchsorted(position, position + margin, right=True)
        ends = torch.cumsum(high - low, dim=0)
        for first, last in _chunks(ends):
            sizes = high[first:last] - low[first:last]
            later = torch.repeat_interleave(torch.arange(first, last, device=x.device), sizes)
            offset = torch.arange(len(later), device=x.device) - torch.repeat_interleave(
                torch.cumsum(sizes, dim=0) - sizes, sizes)
            earlier = low[later] + offset
            j, i = index[earlier], index[later]
            close = (j < i) & criterion(j, i)  # flat index order is rank order within an item
            sources.append(j[close])
            targets.append(i[close])
    return torch.cat(sources), torch.cat(targets)


def _chunks(ends: Tensor) -> list[tuple[int, int]]:
    """``(first, last)`` runs of boxes whose candidate counts (running totals ``ends``) sum to about
    :data:`_PAIR_BLOCK` each (a box with more forms a run alone)."""
    total = int(ends[-1]) if len(ends) else 0
    marks = torch.arange(1, max(1, -(-total // _PAIR_BLOCK)), device=ends.device) * _PAIR_BLOCK
    cuts = torch.searchsorted(ends, marks, right=True).tolist()
    bounds = sorted({0, len(ends), *cuts})
    return [(first, last) for first, last in zip(bounds, bounds[1:]) if last > first]


def _sparse_greedy(alive: Tensor, src: Tensor, dst: Tensor) -> Tensor:
    """Greedy suppression over the pairs ``(src, dst)`` (flat indices, ``src`` earlier): the fixed
    point of ``keep[i] = alive[i] and not any(keep[j] for (j, i))``, iterated from ``keep = alive``."""
    alive_flat = alive.flatten()
    keep = alive_flat
    for _ in range(len(alive_flat)):
        hit = torch.zeros(len(alive_flat), dtype=torch.int32, device=alive.device)
        hit.scatter_add_(0, dst, keep[src].to(torch.int32))
        updated = alive_flat & (hit == 0)
        if torch.equal(updated, keep):
            break
        keep = updated
    return keep.reshape(alive.shape)


def _budgeted_pairs(pairs: Tensor, budget: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(src, dst, present, fits)``: ``budget`` entries of ``pairs [B, M, M]`` per item in fixed shapes,
    the true ones first (``present`` marks them; ``fits [B]`` where an item had no more), as flat
    box indices."""
    batch, rows = pairs.shape[:2]
    flat = pairs.reshape(batch, rows * rows).to(torch.int32)
    values, index = flat.topk(min(budget, rows * rows), dim=1)  # [B, E]
    fits = flat.sum(dim=1) <= values.shape[1]
    base = torch.arange(batch, device=pairs.device)[:, None] * rows
    return (base + index // rows).flatten(), (base + index % rows).flatten(), (values > 0).flatten(), fits


def _all_true(alive: Tensor) -> Tensor:
    return torch.ones(alive.shape[0], dtype=torch.bool, device=alive.device)
