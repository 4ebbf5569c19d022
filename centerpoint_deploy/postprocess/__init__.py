"""Post-processing: head maps -> boxes (decode, circle NMS per task, merge tasks).

Device-agnostic torch with fixed shapes until the final per-item compaction.
"""

from __future__ import annotations

import torch
from torch import Tensor

from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.errors import BackendError
from centerpoint_deploy.postprocess.decode import DecodedBoxes, decode_task
from centerpoint_deploy.postprocess.nms import circle_nms
from centerpoint_deploy.postprocess.rot_reference import apply_rot_y_axis_reference, undo_rot_y_axis_reference
from centerpoint_deploy.structures import Detections

__all__ = [
    "DecodedBoxes", "apply_rot_y_axis_reference", "circle_nms", "decode_task", "postprocess",
    "undo_rot_y_axis_reference",
]


def postprocess(task_maps: list[dict[str, Tensor]], config: ModelConfig) -> list[Detections]:
    """Boxes of every batch item from the head maps of every task.

    Per task: :func:`decode_task`, then :func:`circle_nms` with that task's
    ``nms.min_radius`` and ``nms.post_max_size`` (mmdet3d applies ``post_max_size`` per task).
    Labels are offset by the classes of the earlier tasks, so they index
    ``config.class_names``; the tasks' boxes are merged and sorted by descending score.

    Args:
        task_maps: one dict per task (see :func:`decode_task`), plain mmdet3d convention.

    Returns:
        One :class:`Detections` per batch item.
    """
    tasks = config.head.tasks
    if len(task_maps) != len(tasks):
        raise BackendError(f"got head maps for {len(task_maps)} tasks, the config has {len(tasks)}")
    kept: list[tuple[DecodedBoxes, Tensor]] = []
    label_offset = 0
    for task, maps, radius in zip(tasks, task_maps, config.nms.min_radius):
        decoded = decode_task(maps, config)
        keep = circle_nms(decoded.boxes[..., :2], decoded.scores, decoded.valid, radius, config.nms.post_max_size)
        decoded.labels = decoded.labels + label_offset
        kept.append((decoded, keep))
        label_offset += task.num_classes

    batch = kept[0][0].scores.shape[0]
    results = []
    for item in range(batch):
        boxes = torch.cat([d.boxes[item][k[item]] for d, k in kept])
        scores = torch.cat([d.scores[item][k[item]] for d, k in kept])
        labels = torch.cat([d.labels[item][k[item]] for d, k in kept])
        order = torch.argsort(scores, descending=True, stable=True)
        results.append(Detections(boxes=boxes[order], scores=scores[order], labels=labels[order]))
    return results
