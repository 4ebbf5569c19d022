"""Head maps -> candidate boxes, with mmdet3d ``CenterPointBBoxCoder`` semantics.

Fixed shapes throughout (``K`` candidates per batch item plus a ``valid`` mask), so decoding
can stay on the GPU without host synchronisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.errors import BackendError
from centerpoint_deploy.device import device_constant

#: Channels of each head map of one task.
MAP_CHANNELS = {"reg": 2, "height": 1, "dim": 3, "rot": 2, "vel": 2}


@dataclass
class DecodedBoxes:
    """Top-K candidates of one task for a batch, in descending score order per item.

    Attributes:
        boxes: ``Tensor[B, K, 9]`` ``[x, y, z, l, w, h, yaw, vx, vy]`` (z at the centre).
        scores: ``Tensor[B, K]`` sigmoid heatmap values in [0, 1].
        labels: ``Tensor[B, K]`` int64 class index within the task.
        valid: ``Tensor[B, K]`` bool, score above threshold and centre inside post_center_range.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    valid: Tensor


def decode_task(maps: dict[str, Tensor], config: ModelConfig) -> DecodedBoxes:
    """Decode one task's head maps.

    Args:
        maps: ``heatmap [B, C, h, w]`` (logits), ``reg [B, 2, h, w]`` (cell offsets),
            ``height [B, 1, h, w]`` (box centre z, m), ``dim [B, 3, h, w]`` (log l, w, h when
            ``norm_bbox``), ``rot [B, 2, h, w]`` (sin, cos of yaw), ``vel [B, 2, h, w]`` (m/s),
            in the plain mmdet3d convention (undo ``rot_y_axis_reference`` first).
        config: grid, ``decode`` and ``head.norm_bbox`` settings.

    Returns:
        :class:`DecodedBoxes` with ``K = min(max_num, C * min(max_num, h * w))``: the top
        ``max_num`` cells per class, then the global top ``max_num`` of those;
        ``x = (ix + reg_x) * out_size_factor * vx + x_min`` (same for y), ``z = height``,
        ``yaw = atan2(sin, cos)``; valid when ``score > score_threshold`` (strict; no test
        when the threshold is 0, as mmdet3d) and the centre lies in ``post_center_range``
        (inclusive).
    """
    heat = check_maps(maps)
    dec = config.decode
    batch, num_classes, height, width = heat.shape
    scores_map = heat.sigmoid().reshape(batch, num_classes, height * width)

    per_class = min(dec.max_num, height * width)
    class_scores, class_cells = torch.topk(scores_map, per_class)  # [B, C, k] each
    total = min(dec.max_num, num_classes * per_class)
    scores, flat = torch.topk(class_scores.reshape(batch, -1), total)  # [B, K]
    labels = torch.div(flat, per_class, rounding_mode="floor")
    cells = torch.gather(class_cells.reshape(batch, -1), 1, flat)  # [B, K] index into h * w
    ys = torch.div(cells, width, rounding_mode="floor").to(heat.dtype)
    xs = (cells % width).to(heat.dtype)

    reg, hei, dim, rot, vel = (_gather(maps[name], cells) for name in ("reg", "height", "dim", "rot", "vel"))
    if config.head.norm_bbox:
        dim = torch.exp(dim)
    vx, vy, _ = config.voxelization.voxel_size
    x_min, y_min = config.voxelization.point_cloud_range[:2]
    x = (xs + reg[..., 0]) * dec.out_size_factor * vx + x_min
    y = (ys + reg[..., 1]) * dec.out_size_factor * vy + y_min
    yaw = torch.atan2(rot[..., 0], rot[..., 1])
    boxes = torch.cat([x[..., None], y[..., None], hei, dim, yaw[..., None], vel], dim=2)  # [B, K, 9]

    limits = device_constant(dec.post_center_range, boxes.device).to(boxes.dtype)  # no host sync
    valid = ((boxes[..., :3] >= limits[:3]) & (boxes[..., :3] <= limits[3:])).all(dim=2)
    if dec.score_threshold > 0:
        valid &= scores > dec.score_threshold
    return DecodedBoxes(boxes=boxes, scores=scores, labels=labels, valid=valid)


def _gather(feature_map: Tensor, cells: Tensor) -> Tensor:
    """``Tensor[B, ch, h, w]`` at ``cells [B, K]`` -> ``Tensor[B, K, ch]``."""
    batch, channels = feature_map.shape[:2]
    flat = feature_map.reshape(batch, channels, -1)
    return torch.gather(flat, 2, cells.unsqueeze(1).expand(-1, channels, -1)).transpose(1, 2)


def check_maps(maps: dict[str, Tensor]) -> Tensor:
    """Return the heatmap after checking that every map is present and shaped alike."""
    missing = [name for name in ("heatmap", *MAP_CHANNELS) if name not in maps]
    if missing:
        raise BackendError(f"head outputs lack {missing}; got {sorted(maps)}")
    heat = maps["heatmap"]
    if heat.dim() != 4:
        raise BackendError(f"heatmap must be [B, C, h, w], got {list(heat.shape)}")
    batch, _, height, width = heat.shape
    for name, channels in MAP_CHANNELS.items():
        expected = [batch, channels, height, width]
        if list(maps[name].shape) != expected:
            raise BackendError(f"head output '{name}' has shape {list(maps[name].shape)}, expected {expected}")
    return heat
