"""The post-processing of Autoware's ``autoware_lidar_centerpoint`` node, vectorized (torch, numpy).

What the car outputs from the head's maps (``postprocess: autoware``), step by step as the node
runs it (``lib/postprocess/postprocess_kernel.cu``, ``circle_nms_kernel.cu``,
``non_maximum_suppression.cpp``, ``detection_class_remapper.cpp``, ``src/node.cpp``):

1. per cell: sigmoid of every class's logit, the class with the highest score (the first one
   on ties), the centre ``x = vx * ds * (xi + reg0) + x_min`` (no half-cell offset), its
   distance bin and that bin's class threshold, the yaw-norm threshold;
2. the surviving cells sorted by descending score, class-agnostic circle NMS;
3. IoU-BEV NMS within a search distance, never between a pedestrian and another class;
4. the class remapper by footprint area.

``docs/autoware-postprocess.md`` lists every comparison matched and where it was read.
The decode runs in torch on the maps' device in fixed shapes (each frame's best cells, nothing
read on the host); the sort of the kept cells, both NMS and the remapper run in numpy on the
host (as the node runs its IoU-BEV NMS on the CPU). The decode's constant tables are made once
per device, not per frame (a host -> device copy waits for the device).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from centerpoint_deploy.config.schema import ModelConfig, VoxelizationConfig
from centerpoint_deploy.errors import BackendError, ConfigError
from centerpoint_deploy.postprocess.decode import check_maps
from centerpoint_deploy.postprocess.node_params import ClassRemapper, NodePostprocessParams, semantic_label
from centerpoint_deploy.postprocess.rot_reference import apply_rot_y_axis_reference
from centerpoint_deploy.postprocess.rotated_iou import bev_iou_pairs
from centerpoint_deploy.structures import Detections

#: Autoware's PEDESTRIAN label (``node_params.AUTOWARE_LABELS``).
_PEDESTRIAN = semantic_label("pedestrian")
#: Box columns of a BEV footprint: x, y, length, width, yaw.
_FOOTPRINT = (0, 1, 3, 4, 6)
#: Most entries of one distance block while finding close pairs (bounds memory, not a limit on boxes).
_PAIR_BLOCK = 1 << 22


@dataclass
class NodeBoxes:
    """Boxes of one frame, or of a batch's frames one after another, as the node's decode kernel
    leaves them: by frame, then by descending score.

    Attributes:
        boxes: ``Tensor[K, 9]`` float32 ``[x, y, z, l, w, h, yaw, vx, vy]``, yaw as the node
            publishes it (``-atan2(rot0, rot1) - pi/2``, wrapped into ``[-pi, pi)``).
        scores: ``Tensor[K]`` float32, all > 0.
        labels: ``Tensor[K]`` int64, index into ``config.class_names``.
        cells: ``Tensor[K]`` int64, flat cell index ``yi * w + xi`` (ties in score keep this order).
        items: ``Tensor[K]`` int64 batch item of each box (``None``: all of one frame). Boxes of
            different items never suppress each other.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    cells: Tensor
    items: Tensor | None = None

    def select(self, keep: Tensor) -> "NodeBoxes":
        return NodeBoxes(self.boxes[keep], self.scores[keep], self.labels[keep], self.cells[keep],
                         None if self.items is None else self.items[keep])

    def per_item(self, batch: int) -> list["NodeBoxes"]:
        """One :class:`NodeBoxes` per batch item of ``batch`` (reading the counts is one host read)."""
        if self.items is None:
            return [self]
        counts = torch.bincount(self.items, minlength=batch).tolist()
        columns = (self.boxes, self.scores, self.labels, self.cells)
        return [NodeBoxes(*part) for part in zip(*(torch.split(column, counts) for column in columns))]


def node_maps(maps: dict[str, Tensor], rot_y_axis_reference: bool) -> dict[str, Tensor]:
    """The maps as the node reads them from the ONNX: plain mmdet3d maps in, the export's convention out.

    With ``rot_y_axis_reference`` (AWML's export option, what the node's formulas assume)
    ``dim`` is (w, l, h) and ``rot`` (-cos, -sin); without it the node reads the plain maps
    with the same formulas, which swaps l and w and turns the heading: the emulation keeps that.
    """
    return apply_rot_y_axis_reference(maps) if rot_y_axis_reference else dict(maps)


def decode_node(maps: dict[str, Tensor], config: ModelConfig, params: NodePostprocessParams) -> list[NodeBoxes]:
    """:func:`decode_node_batch`, one :class:`NodeBoxes` per batch item."""
    return decode_node_batch(maps, config, params).per_item(maps["heatmap"].shape[0])


def decode_node_batch(maps: dict[str, Tensor], config: ModelConfig, params: NodePostprocessParams) -> NodeBoxes:
    """The node's ``generateBoxes3D_kernel`` and its score filter and sort, for every batch item, exactly
    (:func:`decode_node_candidates` with room for every cell), on the host."""
    heat = maps["heatmap"]
    return decode_node_candidates(maps, config, params, capacity=heat.shape[-2] * heat.shape[-1]).to_host().boxes()


@dataclass
class NodeCandidates:
    """The cells the node's decode keeps, ``capacity`` a batch item at most, in fixed shapes (nothing
    read on the host to make them), on their way to the host.

    Attributes:
        packed: ``Tensor[B, K, 12]`` float32 per item, by descending score: the 9 box columns of
            :class:`NodeBoxes`, score, label, flat cell index; rows past the item's count have score 0.
        counts: ``Tensor[B]`` int64, cells kept per item; more than ``K`` means some are missing
            (:meth:`boxes` gives ``None``; decode again with more room).
    """

    packed: Tensor
    counts: Tensor
    _event: torch.cuda.Event | None = None

    def to_host(self) -> "NodeCandidates":
        """These candidates on the host: on CUDA copied into pinned memory without waiting (an event
        marks the copy's end; :meth:`boxes` waits for it)."""
        if self.packed.device.type != "cuda":
            return NodeCandidates(self.packed.cpu(), self.counts.cpu())
        packed = torch.empty(self.packed.shape, dtype=self.packed.dtype, pin_memory=True)
        counts = torch.empty(self.counts.shape, dtype=self.counts.dtype, pin_memory=True)
        packed.copy_(self.packed, non_blocking=True)
        counts.copy_(self.counts, non_blocking=True)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.packed.device))
        return NodeCandidates(packed, counts, event)

    def boxes(self) -> NodeBoxes | None:
        """The kept cells of every item (host candidates), by item, then descending score, ties in
        cell order (as a stable sort would leave them; the node's ``thrust::sort`` promises no order
        for ties); ``None`` when an item kept more cells than there was room for."""
        if self._event is not None:
            self._event.synchronize()
        batch, room = self.packed.shape[:2]
        counts = self.counts
        if bool((counts > room).any()):
            return None
        counts = counts.numpy()
        rows = self.packed.numpy()[np.arange(room)[None, :] < counts[:, None]]  # [K, 12] by item: kept rows first
        items = np.repeat(np.arange(batch), counts)
        order = np.lexsort((rows[:, 11], -rows[:, 9], items))  # item, then descending score, then cell
        rows, items = rows[order], items[order]
        return NodeBoxes(torch.from_numpy(np.ascontiguousarray(rows[:, :9])), torch.from_numpy(rows[:, 9].copy()),
                         torch.from_numpy(rows[:, 10].astype(np.int64)), torch.from_numpy(rows[:, 11].astype(np.int64)),
                         torch.from_numpy(items))


#: Cells a batch item keeps room for in :meth:`AutowarePostprocess.launch` (a frame with more is
#: decoded again with room for every cell: exact, slower). A trained model keeps tens to hundreds.
NODE_CAPACITY = 4096


def decode_node_candidates(maps: dict[str, Tensor], config: ModelConfig, params: NodePostprocessParams,
                           capacity: int = NODE_CAPACITY) -> NodeCandidates:
    """The node's ``generateBoxes3D_kernel`` and score filter for every batch item, in fixed shapes.

    Args:
        maps: one task's maps in the convention the node reads (see :func:`node_maps`):
            ``heatmap [B, C, h, w]`` logits, ``reg [B, 2, h, w]``, ``height [B, 1, h, w]``,
            ``dim [B, 3, h, w]`` log (w, l, h), ``rot [B, 2, h, w]``, ``vel [B, 2, h, w]``.
        config: the grid (``voxel_size``, ``point_cloud_range``, ``decode.out_size_factor``).
        params: thresholds per class and distance bin, yaw-norm thresholds.
        capacity: the most cells an item keeps room for (at most ``h * w``).

    Returns:
        Each item's ``min(capacity, h * w)`` best cells on the maps' device, with their count;
        nothing is read on the host (so a pipeline can queue the next frame first).
    """
    heat = _check(maps, config)
    batch, num_classes, height, width = heat.shape
    if height * width >= 1 << 24:
        raise ConfigError(f"a {height} x {width} head grid has too many cells for float32 cell indices")
    device = heat.device
    f32 = torch.float32
    logits = heat.to(f32)
    scores = 1.0 / (1.0 + torch.exp(-logits))  # the kernel's sigmoid
    scores = torch.where(torch.isnan(scores), torch.full_like(scores, -1.0), scores)  # NaN never wins `score > max`
    max_score, label = scores.max(dim=1)  # [B, h, w]; first maximum on ties, as the strict `>` loop
    found = max_score >= 0  # some class had a number

    reg, z, dim, rot, vel = (maps[name].to(f32) for name in ("reg", "height", "dim", "rot", "vel"))
    step_x, step_y, x_min, y_min = _grid(config.voxelization, config.decode.out_size_factor, device)
    xi = torch.arange(width, device=device, dtype=f32)[None, None, :]
    yi = torch.arange(height, device=device, dtype=f32)[None, :, None]
    x = step_x * (xi + reg[:, 0]) + x_min  # [B, h, w]
    y = step_y * (yi + reg[:, 1]) + y_min
    radial = torch.sqrt(x * x + y * y)

    limits = _constant(params.thresholds.distance_bin_upper_limits, f32, device)
    bins = (radial[..., None] >= limits).sum(dim=-1)  # first bin with radial < limit
    in_bins = (bins < limits.numel()) & ~torch.isnan(radial)
    table = _constant(params.thresholds.min_confidence_scores, f32, device)  # [C, bins]
    threshold = table[label, bins.clamp(max=limits.numel() - 1)]
    yaw_limit = _constant(params.yaw_norm_thresholds, f32, device)[label]
    yaw_norm = torch.sqrt(rot[:, 0] * rot[:, 0] + rot[:, 1] * rot[:, 1])
    score = torch.where(found & in_bins & ~(max_score < threshold) & (yaw_norm >= yaw_limit), max_score,
                        torch.zeros_like(max_score)).reshape(batch, -1)
    counts = (score > 0.0).sum(dim=1)  # the kernel's is_score_keep
    top_scores, cells = score.topk(min(capacity, height * width), dim=1)  # [B, K], descending

    def at_cells(channels: Tensor) -> Tensor:  # [B, c, h, w] -> [B, K, c]
        flat = channels.reshape(batch, channels.shape[1], -1)
        return flat.gather(2, cells[:, None, :].expand(-1, flat.shape[1], -1)).transpose(1, 2)

    picked_rot = at_cells(rot)
    yaw_net = torch.atan2(picked_rot[..., 0], picked_rot[..., 1])
    yaw = _wrap(-yaw_net.double() - math.pi / 2).to(f32)  # ros_utils: yaw = -box.yaw - pi/2
    sizes = torch.exp(at_cells(dim))  # channel 0 = width, 1 = length, 2 = height in the node's reading
    xy, picked_vel = at_cells(torch.stack([x, y], dim=1)), at_cells(vel)
    packed = torch.stack([xy[..., 0], xy[..., 1], at_cells(z)[..., 0], sizes[..., 1], sizes[..., 0], sizes[..., 2],
                          yaw, picked_vel[..., 0], picked_vel[..., 1], top_scores,
                          label.reshape(batch, -1).gather(1, cells).to(f32), cells.to(f32)], dim=-1)
    return NodeCandidates(packed, counts)


@functools.lru_cache(maxsize=64)
def _constant(values: Any, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``torch.tensor(values)`` on ``device``, made once (a host -> device copy per call would wait for
    the device); ``values`` a number or nested tuples. Read only; a normal tensor even when first
    asked for under ``inference_mode`` (so that autograd may still use it)."""
    with torch.inference_mode(False):
        return torch.tensor(values, dtype=dtype, device=device)


@functools.lru_cache(maxsize=16)
def _grid(voxelization: VoxelizationConfig, out_size_factor: int, device: torch.device) -> tuple[Tensor, ...]:
    """``(step_x, step_y, x_min, y_min)``: float32 scalars on ``device``, the steps rounded as float32
    products on the host (as the kernel's ``voxel_size * downsample``). Read only."""
    f32 = torch.float32
    steps = [float(torch.tensor(size, dtype=f32) * out_size_factor) for size in voxelization.voxel_size[:2]]
    return tuple(_constant(value, f32, device) for value in (*steps, *voxelization.point_cloud_range[:2]))


def _wrap(angle: Tensor) -> Tensor:
    """Angles into ``[-pi, pi)``."""
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


def close_pairs(xy: np.ndarray, limit_sq: float, *, strict: bool,
                groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Ordered pairs ``(earlier, later)`` of points whose squared distance is below a limit.

    Args:
        xy: ``ndarray[K, 2]`` in rank order; distances in its dtype as ``dx*dx + dy*dy``.
        limit_sq: the squared distance limit.
        strict: ``<`` (else ``<=``).
        groups: ``ndarray[K]`` int64; only points of the same group pair (``None``: one group).

    Returns:
        ``(src, dst)`` ``ndarray[E]`` int64 with ``src < dst``. Built in blocks of rows so
        memory stays bounded for any ``K``.
    """
    count = xy.shape[0]
    rows = max(1, _PAIR_BLOCK // max(count, 1))
    columns = np.arange(count)
    limit = xy.dtype.type(limit_sq)
    sources, targets = [], []
    for start in range(0, count, rows):
        block = xy[start:start + rows]
        earlier = xy[:start + len(block)]  # only earlier boxes can be a pair's source
        dx = block[:, None, 0] - earlier[None, :, 0]
        dy = block[:, None, 1] - earlier[None, :, 1]
        dist_sq = dx * dx + dy * dy  # [rows, start + rows]
        close = dist_sq < limit if strict else dist_sq <= limit
        close &= columns[None, :start + len(block)] < columns[start:start + rows, None]
        if groups is not None:
            close &= groups[None, :start + len(block)] == groups[start:start + rows, None]
        target, source = np.nonzero(close)
        sources.append(source)
        targets.append(target + start)
    if not sources:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(sources).astype(np.int64), np.concatenate(targets).astype(np.int64)


def greedy_keep(count: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Greedy suppression in rank order over a sparse "close" relation.

    ``keep[i] = not any(keep[j] for (j, i) in pairs)`` with every ``j < i``: the unique fixed
    point, reached by iterating from ``keep = all`` (after ``t`` rounds the first ``t`` entries
    are final; a round that changes nothing ends it; chains are short in practice).

    Returns:
        ``ndarray[count]`` bool.
    """
    keep = np.ones(count, dtype=bool)
    for _ in range(count):
        updated = np.bincount(dst[keep[src]], minlength=count) == 0
        if np.array_equal(updated, keep):
            break
        keep = updated
    return keep


def _host(tensor: Tensor) -> np.ndarray:
    """A tensor's values as a host array (no copy for a CPU tensor)."""
    return tensor.detach().cpu().numpy()


def circle_nms_node(boxes: NodeBoxes, distance: float) -> Tensor:
    """The node's ``circleNMS``: greedy over the score order, class-agnostic.

    A later box is suppressed by a kept earlier one of its frame when ``dx**2 + dy**2 < distance**2``
    (float32, strict). Computed on the host.

    Returns:
        ``Tensor[K]`` bool on the boxes' device, boxes kept.
    """
    xy = _host(boxes.boxes)[:, :2].astype(np.float32)
    groups = None if boxes.items is None else _host(boxes.items)
    src, dst = close_pairs(xy, _float32_square(distance), strict=True, groups=groups)
    return torch.from_numpy(greedy_keep(len(xy), src, dst)).to(boxes.boxes.device)


@functools.lru_cache(maxsize=16)
def _float32_square(value: float) -> float:
    """``value ** 2`` rounded as float32 (the node's ``dist_thresh * dist_thresh`` in float)."""
    return float(np.float32(value) * np.float32(value))


def iou_bev_nms_node(boxes: NodeBoxes, class_names: tuple[str, ...], search_distance: float,
                     iou_threshold: float) -> Tensor:
    """The node's ``NonMaximumSuppression::apply`` (IoU-BEV NMS on the CPU in the node, and here).

    Box ``i`` is dropped when some earlier box ``j`` of its frame (in the circle-NMS output order,
    dropped or not: the node's rule is not greedy) has ``IoU > iou_threshold``, where a pair counts
    only if its squared centre distance is ``<= search_distance**2`` (float64) and it is not a
    pedestrian facing another label.

    Returns:
        ``Tensor[K]`` bool on the boxes' device, boxes kept.
    """
    table = _host(boxes.boxes)
    count = len(table)
    xy = table[:, :2].astype(np.float64)
    groups = None if boxes.items is None else _host(boxes.items)
    src, dst = close_pairs(xy, float(search_distance) ** 2, strict=False, groups=groups)
    semantic = _semantic_labels(class_names)[_host(boxes.labels)]
    a, b = semantic[src], semantic[dst]
    counted = ~((a != b) & ((a == _PEDESTRIAN) | (b == _PEDESTRIAN)))
    footprint = table[:, list(_FOOTPRINT)].astype(np.float64)
    # pairs farther apart than their circumscribed circles cannot overlap (IoU 0): skip them
    radius = np.sqrt(footprint[:, 2] ** 2 + footprint[:, 3] ** 2) / 2
    gap = ((xy[src] - xy[dst]) ** 2).sum(axis=1)
    reach = radius[src] + radius[dst]
    counted &= ~(gap > reach * reach)  # NaN sizes stay in: their IoU is computed (and is 0)
    src, dst = src[counted], dst[counted]
    keep = np.ones(count, dtype=bool)
    if len(src):
        keep[dst[bev_iou_pairs(footprint[src], footprint[dst]) > iou_threshold]] = False
    return torch.from_numpy(keep).to(boxes.boxes.device)


@functools.lru_cache(maxsize=16)
def _semantic_labels(class_names: tuple[str, ...]) -> np.ndarray:
    """Autoware's label of each class (read only)."""
    table = np.array([semantic_label(name) for name in class_names], dtype=np.int64)
    table.flags.writeable = False
    return table


def remap_classes(boxes: NodeBoxes, params: NodePostprocessParams) -> Tensor:
    """The node's ``DetectionClassRemapper::mapClasses``: new labels by BEV footprint area.

    ``area = float(length * width)``; class ``i`` becomes the first class ``j`` in Autoware's
    label order with ``allow[i][j]`` and ``min[i][j] <= area <= max[i][j]`` (non-finite matrix
    entries read as the largest double, as the node does); else it stays. Computed on the host.

    Returns:
        ``Tensor[K]`` int64 labels on the boxes' device.
    """
    remapper = params.remapper
    if remapper.is_identity or len(boxes.scores) == 0:
        return boxes.labels
    allow, low, high, order = _remap_tables(remapper)
    table, labels = _host(boxes.boxes), _host(boxes.labels)
    area = (table[:, 3].astype(np.float64) * table[:, 4].astype(np.float64)).astype(np.float32).astype(np.float64)
    area = area[:, None]
    match = allow[labels][:, order] & (area >= low[labels][:, order]) & (area <= high[labels][:, order])
    first = match.argmax(axis=1)  # first True in the node's order
    return torch.from_numpy(np.where(match.any(axis=1), order[first], labels)).to(boxes.labels.device)


@functools.lru_cache(maxsize=16)
def _remap_tables(remapper: ClassRemapper) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(allow [C, C] bool, low [C, C] f64, high [C, C] f64, order [C] int64)``: the matrices with
    non-finite entries as the largest double, and the model's classes in Autoware's label order
    (the order the node walks the targets in). Made once per remapper; read only."""
    big = np.finfo(np.float64).max
    low, high = (np.array([[v if math.isfinite(v) else big for v in row] for row in matrix], dtype=np.float64)
                 for matrix in (remapper.min_area_matrix, remapper.max_area_matrix))
    order = sorted(range(len(remapper.class_names)), key=lambda c: semantic_label(remapper.class_names[c]))
    tables = (np.array(remapper.allow_remapping_by_area_matrix, dtype=bool), low, high, np.array(order, np.int64))
    for table in tables:
        table.flags.writeable = False
    return tables


class AutowarePostprocess:
    """Head maps -> boxes as ``autoware_lidar_centerpoint`` outputs them (a Detector post-processor).

    Args:
        config: the model (one head task, as the node reads one set of maps).
        params: the node's parameters (default: the node's defaults for ``config.class_names``).
        rot_y_axis_reference: the convention of the ONNX the node reads (AWML exports with it;
            see :func:`node_maps`).
        capacity: cells a frame keeps room for in :meth:`launch` (see :data:`NODE_CAPACITY`).

    Call with ``task_maps`` (one dict per task, plain mmdet3d convention, as the Detector
    passes them) and get one :class:`Detections` per batch item, by descending score, on the
    host: the decode runs on the maps' device (:meth:`launch`), the two NMS and the remapper in
    numpy on the CPU (:meth:`finish`), where the node runs its IoU-BEV NMS too. For tens of boxes
    small device kernels and the greedy rounds' reads cost more than the arithmetic (H200, demo
    model, 125 candidates: circle NMS 0.75 ms and IoU-BEV NMS 2.73 ms on the GPU in torch; the
    whole host part 0.37-0.40 ms on a 2-core CPU in numpy, ``benchmarks/node_host_cost.py``).
    """

    def __init__(self, config: ModelConfig, params: NodePostprocessParams | None = None, *,
                 rot_y_axis_reference: bool = True, capacity: int = NODE_CAPACITY) -> None:
        if len(config.head.tasks) != 1:
            raise ConfigError(f"postprocess 'autoware' reads one head task, as the node does; the config has "
                              f"{len(config.head.tasks)} tasks")
        self.config = config
        self.params = params if params is not None else NodePostprocessParams.defaults(config.class_names)
        names = tuple(n.lower() for n in self.params.thresholds.class_names)
        if names != tuple(n.lower() for n in config.class_names):
            raise ConfigError(f"the node parameters name classes {list(self.params.thresholds.class_names)}, "
                              f"the model {list(config.class_names)}")
        self.rot_y_axis_reference = rot_y_axis_reference
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ConfigError(f"capacity must be an integer >= 1, got {capacity!r}")
        self.capacity = capacity

    def __call__(self, task_maps: list[dict[str, Tensor]]) -> list[Detections]:
        return self.finish(self.launch(task_maps), lambda: task_maps)

    def launch(self, task_maps: list[dict[str, Tensor]]) -> NodeCandidates:
        """:meth:`decode`, its candidates copied towards the host without waiting (:meth:`finish`
        makes the boxes): a loop can queue the next frame before reading these."""
        return self.decode(task_maps).to_host()

    def decode(self, task_maps: list[dict[str, Tensor]]) -> NodeCandidates:
        """The decode on the maps' device in fixed shapes, nothing read on the host (so it can be
        recorded in a CUDA graph)."""
        if len(task_maps) != 1:
            raise BackendError(f"got head maps for {len(task_maps)} tasks, the node reads 1")
        return decode_node_candidates(node_maps(task_maps[0], self.rot_y_axis_reference), self.config,
                                      self.params, self.capacity)

    def finish(self, candidates: NodeCandidates, task_maps: Callable[[], list[dict[str, Tensor]]]) -> list[Detections]:
        """The boxes of :meth:`launch`'s candidates: both NMS and the remapper on the host.

        Args:
            candidates: what :meth:`launch` returned.
            task_maps: gives the same head maps again, called only when a frame kept more cells
                than the candidates had room for (they are decoded again with room for all).
        """
        params = self.params
        boxes = candidates.boxes()
        if boxes is None:
            boxes = decode_node_batch(node_maps(task_maps()[0], self.rot_y_axis_reference), self.config, params)
        boxes = boxes.select(circle_nms_node(boxes, params.circle_nms_dist_threshold))
        boxes = boxes.select(iou_bev_nms_node(boxes, self.config.class_names, params.iou_nms_search_distance_2d,
                                              params.iou_nms_threshold))
        boxes = replace(boxes, labels=remap_classes(boxes, params))
        return [Detections(item.boxes, item.scores, item.labels) for item in boxes.per_item(len(candidates.counts))]

    @property
    def lowest_threshold(self) -> float:
        """The smallest score threshold of any class and distance bin."""
        return min(min(row) for row in self.params.thresholds.min_confidence_scores)

    def box_thresholds(self, detections: Detections) -> Tensor:
        """The score threshold each box had to reach: its class's in its distance bin.

        Returns:
            ``Tensor[K]`` float64 on the CPU (boxes past the last bin, which the node never
            outputs, get the last bin's threshold).
        """
        thresholds = self.params.thresholds
        xy = detections.boxes[:, :2].detach().cpu().to(torch.float32)
        radial = torch.sqrt(xy[:, 0] * xy[:, 0] + xy[:, 1] * xy[:, 1])
        limits = torch.tensor(thresholds.distance_bin_upper_limits, dtype=torch.float32)
        bins = (radial[:, None] >= limits).sum(dim=1).clamp(max=limits.numel() - 1)
        table = torch.tensor(thresholds.min_confidence_scores, dtype=torch.float64)
        return table[detections.labels.cpu(), bins]


def _check(maps: dict[str, Tensor], config: ModelConfig) -> Tensor:
    """:func:`~centerpoint_deploy.postprocess.decode.check_maps`, plus one heatmap channel per class."""
    heat = check_maps(maps)
    if heat.shape[1] != config.num_classes:
        raise BackendError(f"heatmap has {heat.shape[1]} channels for {config.num_classes} classes")
    return heat
