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
On a GPU steps 1-3 run on the maps' device in fixed shapes (each item's ``capacity`` best cells,
a fixed number of greedy rounds and of IoU pairs; :mod:`~centerpoint_deploy.postprocess.node_nms`),
so that they can be recorded in a CUDA graph and nothing is read on the host before the kept
boxes; an item whose result those shapes cannot guarantee is run again exactly. On the CPU they
run exactly. The remapper runs in numpy on the host, on the kept boxes. The decode's constant
tables are made once per device, not per frame (a host -> device copy waits for the device).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from centerpoint_deploy.config.schema import ModelConfig, VoxelizationConfig
from centerpoint_deploy.device import cached_constant, copy_to_host
from centerpoint_deploy.errors import BackendError, ConfigError
from centerpoint_deploy.postprocess.decode import check_maps
from centerpoint_deploy.postprocess.node_nms import NodeBoxes, circle_nms_node, iou_bev_nms_node
from centerpoint_deploy.postprocess.node_params import ClassRemapper, NodePostprocessParams, semantic_label
from centerpoint_deploy.postprocess.rot_reference import apply_rot_y_axis_reference
from centerpoint_deploy.structures import Detections

#: Cells a batch item keeps room for on a GPU (the candidates, and the rows of both NMS's
#: pairwise work). A frame with more is run again exactly: correct, slower. A trained model
#: keeps tens to a few hundred.
NODE_CAPACITY = 512
#: Greedy rounds of the circle NMS on a GPU (chains of suppression are short; an item whose
#: rounds did not converge is run again exactly).
NODE_NMS_ROUNDS = 8
#: IoU pairs an item compares on a GPU (pairs close enough to overlap; more: run again exactly).
NODE_PAIR_BUDGET = 1024


def node_maps(maps: dict[str, Tensor], rot_y_axis_reference: bool) -> dict[str, Tensor]:
    """The maps as the node reads them from the ONNX: plain mmdet3d maps in, the export's convention out.

    With ``rot_y_axis_reference`` (AWML's export option, what the node's formulas assume)
    ``dim`` is (w, l, h) and ``rot`` (-cos, -sin); without it the node reads the plain maps
    with the same formulas, which swaps l and w and turns the heading: the emulation keeps that.
    """
    return apply_rot_y_axis_reference(maps) if rot_y_axis_reference else dict(maps)


def decode_node(maps: dict[str, Tensor], config: ModelConfig, params: NodePostprocessParams) -> list[NodeBoxes]:
    """The node's ``generateBoxes3D_kernel``, score filter and sort for every batch item, exactly: one
    :class:`NodeBoxes` (a batch of one, no padding) per item."""
    heat = maps["heatmap"]
    candidates = decode_node_candidates(maps, config, params, capacity=heat.shape[-2] * heat.shape[-1])
    boxes = candidates.boxes(max(1, int(candidates.counts.max())))
    return [boxes.item(index) for index in range(heat.shape[0])]


@dataclass
class NodeCandidates:
    """The cells the node's decode keeps, ``K`` a batch item at most, in fixed shapes (nothing read
    on the host to make them).

    Attributes:
        packed: ``Tensor[B, K, 12]`` float32 per item, by descending score: the 9 box columns of
            :class:`NodeBoxes`, score, label, flat cell index; rows past the item's count have score 0.
        counts: ``Tensor[B]`` int64, cells kept per item; more than ``K`` means some are missing.
    """

    packed: Tensor
    counts: Tensor

    def boxes(self, rows: int) -> NodeBoxes:
        """The first ``rows`` candidates of each item (``rows <= K``), by descending score, ties in cell
        order (as a stable sort would leave them; the node's ``thrust::sort`` promises no order for
        ties). Fixed shapes, on the candidates' device."""
        packed = self.packed[:, :rows]
        packed = torch.take_along_dim(packed, torch.sort(packed[..., 11], dim=1, stable=True).indices[..., None], dim=1)
        order = torch.sort(packed[..., 9], dim=1, descending=True, stable=True).indices
        packed = torch.take_along_dim(packed, order[..., None], dim=1)
        valid = torch.arange(packed.shape[1], device=packed.device)[None, :] < self.counts[:, None]
        return NodeBoxes(packed[..., :9], packed[..., 9], packed[..., 10].to(torch.int64),
                         packed[..., 11].to(torch.int64), valid)


@dataclass
class NodeSelection:
    """Each item's candidates and which of them the node keeps, on their way to the host.

    Attributes:
        packed: ``Tensor[B, M, 10]`` float32: the 9 box columns, then the score where the box is
            kept and 0 where it is not (or is padding); by descending score.
        labels: ``Tensor[B, M]`` int64.
        exact: ``Tensor[B]`` bool, where the result is the node's exactly (else run again exactly).
    """

    packed: Tensor
    labels: Tensor
    exact: Tensor
    _event: torch.cuda.Event | None = None

    def to_host(self) -> "NodeSelection":
        """This selection on the host: on CUDA copied into pinned memory without waiting (an event
        marks the copy's end; :meth:`wait` waits for it)."""
        host, event = copy_to_host(self.packed, self.labels, self.exact)
        return NodeSelection(*host, event)

    def wait(self) -> "NodeSelection":
        if self._event is not None:
            self._event.synchronize()
        return self

    def kept(self, item: int) -> tuple[Tensor, Tensor, Tensor]:
        """``(boxes [K, 9], scores [K], labels [K])`` kept of ``item``, by descending score (host;
        numpy slices, each a microsecond against several for a torch operator: once a frame, on
        the loop's critical path), in their own memory."""
        rows = self.packed[item].numpy()
        keep = rows[:, 9] > 0
        return (torch.from_numpy(rows[keep, :9]), torch.from_numpy(rows[keep, 9]),
                torch.from_numpy(self.labels[item].numpy()[keep]))


def select_node_boxes(candidates: NodeCandidates, config: ModelConfig, params: NodePostprocessParams,
                      rows: int | None, rounds: int | None = None, pair_budget: int | None = None) -> NodeSelection:
    """Both NMS of the node on each item's candidates.

    Args:
        candidates: the decode's.
        rows: candidates per item taken (fixed shapes); ``None``: every kept cell, exactly
            (reads the counts on the host; then ``rounds`` and ``pair_budget`` are ignored).
        rounds, pair_budget: see :func:`circle_nms_node` and :func:`iou_bev_nms_node`.
    """
    if rows is None:
        rows, rounds, pair_budget = max(1, int(candidates.counts.max())), None, None
    boxes = candidates.boxes(min(rows, candidates.packed.shape[1]))
    circled, converged = circle_nms_node(boxes, params.circle_nms_dist_threshold, rounds)
    kept, fits = iou_bev_nms_node(boxes, circled, config.class_names, params.iou_nms_search_distance_2d,
                                  params.iou_nms_threshold, pair_budget)
    exact = (candidates.counts <= boxes.valid.shape[1]) & converged & fits
    packed = torch.cat([boxes.boxes, torch.where(kept, boxes.scores, torch.zeros_like(boxes.scores))[..., None]], -1)
    return NodeSelection(packed, boxes.labels, exact)


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

    limits = cached_constant(params.thresholds.distance_bin_upper_limits, f32, device)
    bins = (radial[..., None] >= limits).sum(dim=-1)  # first bin with radial < limit
    in_bins = (bins < limits.numel()) & ~torch.isnan(radial)
    table = cached_constant(params.thresholds.min_confidence_scores, f32, device)  # [C, bins]
    threshold = table[label, bins.clamp(max=limits.numel() - 1)]
    yaw_limit = cached_constant(params.yaw_norm_thresholds, f32, device)[label]
    yaw_norm = torch.sqrt(rot[:, 0] * rot[:, 0] + rot[:, 1] * rot[:, 1])
    score = torch.where(found & in_bins & ~(max_score < threshold) & (yaw_norm >= yaw_limit), max_score,
                        torch.zeros_like(max_score)).reshape(batch, -1)
    counts = (score > 0.0).sum(dim=1)  # the kernel's is_score_keep
    top_scores, cells = score.topk(min(capacity, height * width), dim=1)  # [B, K], descending

    def at_cells(channels: Tensor) -> Tensor:  # [B, c, h, w] -> [B, K, c]
        flat = channels.reshape(batch, channels.shape[1], -1)
        return flat.gather(2, cells[:, None, :].expand(-1, flat.shape[1], -1)).transpose(1, 2)

    picked_rot = at_cells(rot)
    # in float64, rounded once to float32: float32 atan2 on the CPU differs by an ulp between its
    # vector and scalar loops, so a box's yaw depended on how many candidates were decoded with it
    # (9 of 237,796 boxes on random maps); float64's ulp differences vanish in the rounding
    yaw_net = torch.atan2(picked_rot[..., 0].double(), picked_rot[..., 1].double())
    yaw = _wrap(-yaw_net - math.pi / 2).to(f32)  # ros_utils: yaw = -box.yaw - pi/2
    sizes = torch.exp(at_cells(dim))  # channel 0 = width, 1 = length, 2 = height in the node's reading
    xy, picked_vel = at_cells(torch.stack([x, y], dim=1)), at_cells(vel)
    packed = torch.stack([xy[..., 0], xy[..., 1], at_cells(z)[..., 0], sizes[..., 1], sizes[..., 0], sizes[..., 2],
                          yaw, picked_vel[..., 0], picked_vel[..., 1], top_scores,
                          label.reshape(batch, -1).gather(1, cells).to(f32), cells.to(f32)], dim=-1)
    return NodeCandidates(packed, counts)


def _grid(voxelization: VoxelizationConfig, out_size_factor: int, device: torch.device) -> tuple[Tensor, ...]:
    """``(step_x, step_y, x_min, y_min)``: float32 scalars on ``device``, the steps rounded as float32
    products on the host (as the kernel's ``voxel_size * downsample``). Read only."""
    f32 = torch.float32
    steps = [float(np.float32(size) * np.float32(out_size_factor)) for size in voxelization.voxel_size[:2]]
    return tuple(cached_constant(value, f32, device) for value in (*steps, *voxelization.point_cloud_range[:2]))


def _wrap(angle: Tensor) -> Tensor:
    """Angles into ``[-pi, pi)``."""
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


def remap_classes(boxes: Tensor, labels: Tensor, params: NodePostprocessParams) -> Tensor:
    """The node's ``DetectionClassRemapper::mapClasses``: new labels by BEV footprint area.

    ``area = float(length * width)``; class ``i`` becomes the first class ``j`` in Autoware's
    label order with ``allow[i][j]`` and ``min[i][j] <= area <= max[i][j]`` (non-finite matrix
    entries read as the largest double, as the node does); else it stays. Computed on the host.

    Args:
        boxes: ``Tensor[K, 9]`` (length and width in columns 3 and 4), on the CPU.
        labels: ``Tensor[K]`` int64.

    Returns:
        ``Tensor[K]`` int64 labels.
    """
    remapper = params.remapper
    if remapper.is_identity or len(labels) == 0:
        return labels
    allow, low, high, order = _remap_tables(remapper)
    table, classes = boxes.numpy(), labels.numpy()
    area = (table[:, 3].astype(np.float64) * table[:, 4].astype(np.float64)).astype(np.float32).astype(np.float64)
    area = area[:, None]
    match = allow[classes][:, order] & (area >= low[classes][:, order]) & (area <= high[classes][:, order])
    first = match.argmax(axis=1)  # first True in the node's order
    return torch.from_numpy(np.where(match.any(axis=1), order[first], classes))


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
    host. :meth:`select` runs the decode and both NMS on the maps' device (in fixed shapes on a
    GPU, so that a pipeline graph records them, :meth:`launch` queues them); :meth:`finish`
    reads the kept boxes and remaps their classes on the host.
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

    def launch(self, task_maps: list[dict[str, Tensor]]) -> NodeSelection:
        """:meth:`select`, copied towards the host without waiting (:meth:`finish` makes the boxes):
        a loop can queue the next frame before reading these."""
        return self.select(task_maps).to_host()

    def select(self, task_maps: list[dict[str, Tensor]], *, fixed_shapes: bool | None = None) -> NodeSelection:
        """The decode and both NMS on the maps' device.

        Args:
            fixed_shapes: ``capacity`` candidates an item, :data:`NODE_NMS_ROUNDS` greedy rounds and
                :data:`NODE_PAIR_BUDGET` IoU pairs, nothing read on the host (so it can be recorded
                in a CUDA graph); else exactly. Default: fixed on CUDA, exact elsewhere.
        """
        if len(task_maps) != 1:
            raise BackendError(f"got head maps for {len(task_maps)} tasks, the node reads 1")
        maps = node_maps(task_maps[0], self.rot_y_axis_reference)
        if fixed_shapes is None:
            fixed_shapes = maps["heatmap"].device.type == "cuda"
        candidates = decode_node_candidates(maps, self.config, self.params, self.capacity)
        if fixed_shapes:
            return select_node_boxes(candidates, self.config, self.params, self.capacity, NODE_NMS_ROUNDS,
                                     NODE_PAIR_BUDGET)
        kept = int(candidates.counts.max())
        if kept > candidates.packed.shape[1]:  # more than the room: decoded again with room for all
            candidates = decode_node_candidates(maps, self.config, self.params, kept)
        return select_node_boxes(candidates, self.config, self.params, rows=None)

    def cell_boxes(self, task_maps: list[dict[str, Tensor]], score_slack: float = 0.0,
                   yaw_norm_slack: float = 0.0) -> Detections:
        """Every cell the node's decode keeps of batch item 0 (its score filter and yaw-norm cut, before
        both NMS), classes remapped, on the host: the box the node makes of each cell (what
        verification checks a moved peak against, :mod:`~centerpoint_deploy.verify.boxes`).

        ``score_slack``, ``yaw_norm_slack``: the thresholds lowered by these
        (:meth:`NodePostprocessParams.loosened`): also the cells that maps within those errors keep."""
        if len(task_maps) != 1:
            raise BackendError(f"got head maps for {len(task_maps)} tasks, the node reads 1")
        maps = node_maps(task_maps[0], self.rot_y_axis_reference)
        cells = math.prod(maps["heatmap"].shape[-2:])
        candidates = decode_node_candidates(maps, self.config, self.params.loosened(score_slack, yaw_norm_slack), cells)
        rows = candidates.packed[0, : int(candidates.counts[0])].cpu()
        boxes = rows[:, :9].contiguous()
        return Detections(boxes, rows[:, 9].contiguous(), remap_classes(boxes, rows[:, 10].to(torch.int64), self.params))

    def finish(self, selection: NodeSelection, task_maps: Callable[[], list[dict[str, Tensor]]]) -> list[Detections]:
        """The boxes of :meth:`launch`'s selection, classes remapped, on the host.

        Args:
            selection: what :meth:`launch` returned.
            task_maps: gives the same head maps again, called only when an item's fixed-shape
                result was not exact (the batch is then run again exactly).
        """
        selection = selection.wait()
        if not selection.exact.numpy().all():
            selection = self.select(task_maps(), fixed_shapes=False).to_host().wait()
        detections = []
        for item in range(len(selection.exact)):
            boxes, scores, labels = selection.kept(item)
            detections.append(Detections(boxes, scores, remap_classes(boxes, labels, self.params)))
        return detections

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
