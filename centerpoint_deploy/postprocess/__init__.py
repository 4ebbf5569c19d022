"""Post-processing: head maps -> boxes (decode, circle NMS per task, merge tasks).

Device-agnostic torch with fixed shapes until the final per-item compaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

import torch
from torch import Tensor

from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.errors import BackendError
from centerpoint_deploy.postprocess.decode import DecodedBoxes, decode_task
from centerpoint_deploy.postprocess.nms import circle_nms, circle_nms_fixed_rounds
from centerpoint_deploy.postprocess.rot_reference import apply_rot_y_axis_reference, undo_rot_y_axis_reference
from centerpoint_deploy.structures import Detections

__all__ = [
    "DecodedBoxes", "HostResult", "PaddedDetections", "apply_rot_y_axis_reference", "circle_nms", "circle_nms_fixed_rounds",
    "decode_task", "decode_tasks", "merge_tasks", "postprocess", "postprocess_padded", "suppress",
    "undo_rot_y_axis_reference", "unpack_host",
]


@dataclass
class PaddedDetections:
    """Boxes of a batch in fixed-size tensors (the GPU-resident form of ``list[Detections]``).

    Attributes:
        boxes: ``Tensor[B, M, 9]``; item ``b``'s boxes are the first ``num_boxes[b]`` rows, by
            descending score; the rows after them are padding.
        scores: ``Tensor[B, M]``.
        labels: ``Tensor[B, M]`` int64, index into ``config.class_names``.
        num_boxes: ``Tensor[B]`` int64.
        nms_converged: ``Tensor[B]`` bool; false where a fixed NMS round budget was too small
            (the result is then not the greedy one: see :func:`suppress`).
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    num_boxes: Tensor
    nms_converged: Tensor

    def unpad(self) -> list[Detections]:
        """One :class:`Detections` per item, on the same device (reads ``num_boxes``: one sync)."""
        return [Detections(self.boxes[b, :n], self.scores[b, :n], self.labels[b, :n])
                for b, n in enumerate(self.num_boxes.tolist())]

    def pack(self, extra: Tensor | None = None) -> Tensor:
        """Everything in one flat ``Tensor[B * M * 11 + 2 * B + E]`` on the device (read it with :func:`unpack_host`).

        Args:
            extra: ``Tensor[E]`` of small integers (< 2**24) on the same device to bring along
                (e.g. deferred input checks).

        Layout: per box ``[9 box columns, score, label]``, then ``num_boxes [B]``,
        ``nms_converged [B]`` and ``extra``, all in the boxes' dtype.
        """
        packed = torch.cat([self.boxes, self.scores[..., None], self.labels[..., None].to(self.boxes.dtype)], dim=2)
        tail = [self.num_boxes.to(self.boxes.dtype), self.nms_converged.to(self.boxes.dtype)]
        if extra is not None:
            tail.append(extra.to(self.boxes.dtype))
        return torch.cat([packed.reshape(-1), *tail])


class HostResult(NamedTuple):
    """:meth:`PaddedDetections.pack` read on the host (:func:`unpack_host`).

    Attributes:
        detections: one :class:`Detections` per item (its own memory, not a view of the packed copy).
        converged: ``nms_converged`` per item.
        extra: the packed extra values as ints.
    """

    detections: list[Detections]
    converged: list[bool]
    extra: list[int]


def unpack_host(host: Tensor, batch: int, rows: int) -> HostResult:
    """Read :meth:`PaddedDetections.pack` ``(B = batch, M = rows)`` after its copy to the host.

    Runs once per frame after the device's work, on the critical path: numpy slices (about a
    microsecond each, against several for a torch operator on the CPU) and one ``tolist``.
    """
    values = host.numpy()
    boxes_end = batch * rows * 11
    tail = values[boxes_end:].astype(np.int64).tolist()  # counts, converged, extra: small integers
    table = values[:boxes_end].reshape(batch, rows, 11)
    detections = [Detections(torch.from_numpy(table[b, :n, :9].copy()), torch.from_numpy(table[b, :n, 9].copy()),
                             torch.from_numpy(table[b, :n, 10].astype(np.int64)))
                  for b, n in enumerate(tail[:batch])]
    return HostResult(detections, [bool(v) for v in tail[batch: 2 * batch]], tail[2 * batch:])


def decode_tasks(task_maps: list[dict[str, Tensor]], config: ModelConfig) -> list[DecodedBoxes]:
    """:func:`decode_task` of every task, labels offset by the classes of the earlier tasks.

    Args:
        task_maps: one dict per task (see :func:`decode_task`), plain mmdet3d convention.
    """
    tasks = config.head.tasks
    if len(task_maps) != len(tasks):
        raise BackendError(f"got head maps for {len(task_maps)} tasks, the config has {len(tasks)}")
    decoded, label_offset = [], 0
    for task, maps in zip(tasks, task_maps):
        boxes = decode_task(maps, config)
        boxes.labels = boxes.labels + label_offset
        decoded.append(boxes)
        label_offset += task.num_classes
    return decoded


def suppress(decoded: list[DecodedBoxes], config: ModelConfig, rounds: int | None = None) -> tuple[list[Tensor], Tensor]:
    """Circle NMS of every task with its ``nms.min_radius`` and ``nms.post_max_size``.

    Args:
        rounds: ``None`` for the exact iteration (:func:`circle_nms`), else a fixed budget
            (:func:`circle_nms_fixed_rounds`, no host synchronisation).

    Returns:
        ``(keep, converged)``: one ``Tensor[B, K_t]`` bool per task, and ``Tensor[B]`` bool.
    """
    keeps, converged = [], None
    for boxes, radius in zip(decoded, config.nms.min_radius):
        if rounds is None:
            keep = circle_nms(boxes.boxes[..., :2], boxes.scores, boxes.valid, radius, config.nms.post_max_size)
            done = torch.ones_like(keep[:, 0])
        else:
            keep, done = circle_nms_fixed_rounds(boxes.boxes[..., :2], boxes.scores, boxes.valid, radius,
                                                 config.nms.post_max_size, rounds)
        keeps.append(keep)
        converged = done if converged is None else converged & done
    return keeps, converged


def merge_tasks(decoded: list[DecodedBoxes], keeps: list[Tensor], converged: Tensor, post_max_size: int) -> PaddedDetections:
    """The kept boxes of all tasks in one fixed-size batch, by descending score (ties: task, then rank).

    ``M = min(sum K_t, num_tasks * post_max_size)`` rows: every task keeps at most ``post_max_size``.
    """
    boxes = torch.cat([d.boxes for d in decoded], dim=1)  # [B, sum K, 9]
    scores = torch.cat([d.scores for d in decoded], dim=1)
    labels = torch.cat([d.labels for d in decoded], dim=1)
    keep = torch.cat(keeps, dim=1)
    rows = min(keep.shape[1], len(keeps) * post_max_size)
    ranked = torch.where(keep, scores, torch.full_like(scores, -torch.inf))
    order = torch.argsort(ranked, dim=1, descending=True, stable=True)[:, :rows]  # [B, M]
    return PaddedDetections(
        boxes=torch.gather(boxes, 1, order.unsqueeze(2).expand(-1, -1, boxes.shape[2])),
        scores=torch.gather(scores, 1, order),
        labels=torch.gather(labels, 1, order),
        num_boxes=keep.sum(dim=1),
        nms_converged=converged,
    )


def postprocess_padded(task_maps: list[dict[str, Tensor]], config: ModelConfig,
                       nms_rounds: int | None = None) -> PaddedDetections:
    """:func:`postprocess` into fixed-size tensors: decode, circle NMS per task, merge.

    With ``nms_rounds`` set, nothing is read on the host; check ``nms_converged`` before
    trusting the boxes (see :func:`suppress`).
    """
    decoded = decode_tasks(task_maps, config)
    keeps, converged = suppress(decoded, config, nms_rounds)
    return merge_tasks(decoded, keeps, converged, config.nms.post_max_size)


def postprocess(task_maps: list[dict[str, Tensor]], config: ModelConfig) -> list[Detections]:
    """Boxes of every batch item from the head maps of every task.

    Per task: :func:`decode_task`, then :func:`circle_nms` with that task's
    ``nms.min_radius`` and ``nms.post_max_size`` (mmdet3d applies ``post_max_size`` per task).
    Labels are offset by the classes of the earlier tasks, so they index
    ``config.class_names``; the tasks' boxes are merged and sorted by descending score.

    Args:
        task_maps: one dict per task (see :func:`decode_task`), plain mmdet3d convention.

    Returns:
        One :class:`Detections` per batch item, on the maps' device.
    """
    return postprocess_padded(task_maps, config).unpad()
