"""CenterPoint training targets (mmdet3d ``CenterHead.get_targets`` semantics), vectorized.

For each head task and point cloud:

- ``heatmap``: one Gaussian per box on its class channel, peak 1 at the box's centre cell,
  radius from the CornerNet rule on the box's BEV size in feature-map cells
  (``max(min_radius, int(gaussian_radius((w, l), gaussian_overlap)))``), sigma =
  ``(2 * radius + 1) / 6``; overlapping Gaussians merge by maximum.
- ``boxes``: ``max_objs`` slots of 10 regression targets, the same channel order as the head:
  ``reg`` (sub-cell offset of the centre, 2), ``height`` (centre z, 1), ``dim`` (log l, w, h
  when ``norm_bbox``, 3), ``rot`` (sin yaw, cos yaw, 2), ``vel`` (vx, vy, 2).
- ``indices``: flattened feature-map cell ``iy * W + ix`` of each slot's centre.
- ``mask``: which slots hold a box.

A box takes the slot of its position among the task's boxes of that point cloud; boxes past
``max_objs``, with a non-positive BEV size, or whose centre falls outside the feature map
have an empty slot and no Gaussian. (mmdet3d truncates the centre towards zero, which keeps
boxes up to one cell below the range; its training pipeline filters those out by range
first, so flooring and skipping gives the same targets.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.errors import DatasetError
from centerpoint_deploy.train.config import CODE_SIZE, TrainConfig


@dataclass
class TaskTargets:
    """Targets of one head task for a batch.

    Attributes:
        heatmap: ``Tensor[B, C, h, w]`` float32 in [0, 1], ``C`` = the task's classes.
        boxes: ``Tensor[B, K, 10]`` float32 regression targets (``K`` = ``max_objs``); may hold
            NaN where the ground truth has no velocity (the loss ignores those entries).
        indices: ``Tensor[B, K]`` int64, centre cell ``iy * w + ix``; 0 in empty slots.
        mask: ``Tensor[B, K]`` bool, True where the slot holds a box.
    """

    heatmap: Tensor
    boxes: Tensor
    indices: Tensor
    mask: Tensor


def gaussian_radius(height: Tensor, width: Tensor, min_overlap: float) -> Tensor:
    """CornerNet Gaussian radius, as mmdet3d's ``gaussian_radius`` computes it.

    The smallest of the three radii at which a corner-shifted box of size ``height x width``
    still overlaps the true box by ``min_overlap``; like mmdet3d (and the original
    CenterNet code) the first two roots are halved rather than divided by ``2a``.

    Args:
        height, width: ``Tensor[N]`` box size in feature-map cells (> 0).
        min_overlap: IoU the shifted box must keep, in (0, 1).

    Returns:
        ``Tensor[N]`` radius in cells (float, before rounding).
    """
    size_sum, area = height + width, height * width
    b1, c1 = size_sum, area * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt(b1 ** 2 - 4 * c1)) / 2
    b2, c2 = 2 * size_sum, (1 - min_overlap) * area
    r2 = (b2 + torch.sqrt(b2 ** 2 - 16 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * size_sum, (min_overlap - 1) * area
    r3 = (b3 + torch.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return torch.minimum(torch.minimum(r1, r2), r3)


def draw_gaussians(heatmap: Tensor, batch: Tensor, channel: Tensor, centre: Tensor, radius: Tensor) -> None:
    """Max-merge one Gaussian per box into ``heatmap`` in place (mmdet3d ``draw_heatmap_gaussian``).

    The Gaussian of radius ``r`` covers ``(2r + 1)^2`` cells around the centre cell, value
    ``exp(-(dx^2 + dy^2) / (2 sigma^2))`` with ``sigma = (2r + 1) / 6``; cells off the map are
    dropped. (mmdet3d also zeroes values below float64 eps x peak; with this sigma the
    smallest value is above ``exp(-9)``, so that rule never applies.)

    Args:
        heatmap: ``Tensor[B, C, h, w]`` float32, updated in place.
        batch, channel: ``Tensor[N]`` int64, the box's point cloud and class channel.
        centre: ``Tensor[N, 2]`` int64, ``(ix, iy)`` centre cell, inside the map.
        radius: ``Tensor[N]`` int64, >= 0.
    """
    if radius.numel() == 0:
        return
    _, num_channels, h, w = heatmap.shape
    reach = int(radius.max())
    offsets = torch.arange(-reach, reach + 1, device=heatmap.device)
    dy, dx = torch.meshgrid(offsets, offsets, indexing="ij")  # [S, S] each, S = 2 * reach + 1
    dx, dy = dx.reshape(1, -1), dy.reshape(1, -1)  # [1, S*S]
    sigma = (2 * radius.double() + 1) / 6  # [N]
    values = torch.exp(-(dx ** 2 + dy ** 2) / (2 * sigma[:, None] ** 2)).float()  # [N, S*S]
    gx, gy = centre[:, :1] + dx, centre[:, 1:] + dy  # [N, S*S]
    r = radius[:, None]
    keep = (dx.abs() <= r) & (dy.abs() <= r) & (gx >= 0) & (gx < w) & (gy >= 0) & (gy < h)
    flat = ((batch[:, None] * num_channels + channel[:, None]) * h + gy) * w + gx
    heatmap.view(-1).scatter_reduce_(0, flat[keep], values[keep], reduce="amax")


def build_targets(gt_boxes: list[Tensor], gt_labels: list[Tensor], config: ModelConfig,
                  train_cfg: TrainConfig) -> list[TaskTargets]:
    """Heatmap and regression targets of every head task for a batch of point clouds.

    Args:
        gt_boxes: per point cloud ``Tensor[M_b, 9]`` float32 boxes ``[x, y, z, l, w, h, yaw,
            vx, vy]`` (LiDAR frame, z at the gravity centre, metres, radians, m/s).
        gt_labels: per point cloud ``Tensor[M_b]`` int64 index into ``config.class_names``.
        config: the model configuration (grid, out_size_factor, tasks, ``norm_bbox``).
        train_cfg: ``gaussian_overlap``, ``min_radius``, ``max_objs``.

    Returns:
        One :class:`TaskTargets` per ``config.head.tasks``, on the boxes' device.

    Raises:
        DatasetError: box/label counts differ, boxes are not ``[M, 9]``, or a label is out
            of range.
    """
    if len(gt_boxes) != len(gt_labels) or not gt_boxes:
        raise DatasetError(f"need one label tensor per box tensor and at least one point cloud, "
                           f"got {len(gt_boxes)} box and {len(gt_labels)} label tensors")
    for b, (boxes, labels) in enumerate(zip(gt_boxes, gt_labels)):
        if boxes.dim() != 2 or boxes.shape[1] != 9 or labels.shape != boxes.shape[:1]:
            raise DatasetError(f"point cloud {b}: boxes must be [M, 9] with M labels, got boxes "
                               f"{list(boxes.shape)} and labels {list(labels.shape)}")
    device = gt_boxes[0].device
    boxes = torch.cat(gt_boxes).float()  # [M, 9]
    labels = torch.cat(gt_labels).long()  # [M]
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= config.num_classes):
        raise DatasetError(f"ground-truth labels must lie in [0, {config.num_classes}) for classes "
                           f"{config.class_names}, got values in [{int(labels.min())}, {int(labels.max())}]")
    batch = torch.repeat_interleave(torch.arange(len(gt_boxes), device=device),
                                    torch.tensor([len(b) for b in gt_boxes], device=device))

    x_min, y_min = config.voxelization.point_cloud_range[:2]
    cell_x, cell_y = (v * config.decode.out_size_factor for v in config.voxelization.voxel_size[:2])
    h, w = config.feature_map_shape
    targets = []
    first_label = 0
    for task in config.head.tasks:
        in_task = (labels >= first_label) & (labels < first_label + task.num_classes)
        t_boxes, t_batch = boxes[in_task], batch[in_task]
        t_channel = labels[in_task] - first_label
        first_label += task.num_classes
        slot = _rank_within_group(t_batch, len(gt_boxes))

        centre = torch.stack([(t_boxes[:, 0] - x_min) / cell_x, (t_boxes[:, 1] - y_min) / cell_y], dim=1)  # [n, 2]
        cell = torch.floor(centre).long()  # [n, 2] (ix, iy)
        size_x, size_y = t_boxes[:, 3] / cell_x, t_boxes[:, 4] / cell_y  # l, w in cells
        valid = ((slot < train_cfg.max_objs) & (size_x > 0) & (size_y > 0)
                 & (cell[:, 0] >= 0) & (cell[:, 0] < w) & (cell[:, 1] >= 0) & (cell[:, 1] < h))
        radius = gaussian_radius(size_y[valid], size_x[valid], train_cfg.gaussian_overlap)
        radius = torch.clamp(torch.floor(radius).long(), min=train_cfg.min_radius)

        heatmap = torch.zeros(len(gt_boxes), task.num_classes, h, w, device=device)
        draw_gaussians(heatmap, t_batch[valid], t_channel[valid], cell[valid], radius)

        v_boxes, v_centre, v_cell = t_boxes[valid], centre[valid], cell[valid]
        dims = torch.log(v_boxes[:, 3:6]) if config.head.norm_bbox else v_boxes[:, 3:6]
        code = torch.cat([v_centre - v_cell, v_boxes[:, 2:3], dims, torch.sin(v_boxes[:, 6:7]),
                          torch.cos(v_boxes[:, 6:7]), v_boxes[:, 7:9]], dim=1)  # [n_valid, 10]
        at = (t_batch[valid], slot[valid])
        reg = torch.zeros(len(gt_boxes), train_cfg.max_objs, CODE_SIZE, device=device)
        reg[at] = code
        indices = torch.zeros(len(gt_boxes), train_cfg.max_objs, dtype=torch.long, device=device)
        indices[at] = v_cell[:, 1] * w + v_cell[:, 0]
        mask = torch.zeros(len(gt_boxes), train_cfg.max_objs, dtype=torch.bool, device=device)
        mask[at] = True
        targets.append(TaskTargets(heatmap=heatmap, boxes=reg, indices=indices, mask=mask))
    return targets


def _rank_within_group(group: Tensor, num_groups: int) -> Tensor:
    """Position of each element among the elements of its group, keeping order.

    Args:
        group: ``Tensor[n]`` int64, non-decreasing group ids in ``[0, num_groups)``.

    Returns:
        ``Tensor[n]`` int64, e.g. groups ``[0, 0, 1, 1, 1]`` -> ``[0, 1, 0, 1, 2]``.
    """
    counts = torch.bincount(group, minlength=num_groups)
    starts = torch.cumsum(counts, 0) - counts
    return torch.arange(group.numel(), device=group.device) - starts[group]
