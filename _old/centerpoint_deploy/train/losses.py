"""CenterPoint losses (mmdet3d ``CenterHead.loss`` semantics).

Per task: a Gaussian focal loss on the sigmoid heatmap, normalised by the number of peak
cells (target exactly 1), plus an L1 loss on the regression maps gathered at the object
centres, weighted per channel by ``code_weights`` and normalised by the number of objects.
The total is the sum over tasks of ``heatmap_weight * focal + bbox_weight * l1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from centerpoint_deploy.config.schema import REGRESSION_HEADS
from centerpoint_deploy.train.config import TrainConfig
from centerpoint_deploy.train.targets import TaskTargets

#: mmdet3d ``clip_sigmoid`` bound: heatmap probabilities are clamped to [eps, 1 - eps].
SIGMOID_CLAMP = 1e-4
_LOG_EPS = 1e-12  # mmdet GaussianFocalLoss adds it inside both logs


@dataclass
class LossTerms:
    """Scalar losses of one step (already weighted); ``total`` is what is back-propagated."""

    total: Tensor
    heatmap: Tensor
    bbox: Tensor

    def as_floats(self) -> dict[str, float]:
        return {"loss": float(self.total), "heatmap": float(self.heatmap), "bbox": float(self.bbox)}


def gaussian_focal_loss(logits: Tensor, target: Tensor, alpha: float = 2.0, gamma: float = 4.0) -> Tensor:
    """CornerNet/CenterNet focal loss on a Gaussian heatmap, summed and divided by the peaks.

    ``p = clamp(sigmoid(logits), 1e-4, 1 - 1e-4)``; peak cells (target == 1) add
    ``-log(p) (1 - p)^alpha``, every other cell adds ``-log(1 - p) p^alpha (1 - target)^gamma``.
    The sum is divided by ``max(number of peak cells, 1)``.

    Args:
        logits: ``Tensor[B, C, h, w]`` heatmap logits (any float dtype; computed in float32).
        target: ``Tensor[B, C, h, w]`` Gaussian targets in [0, 1].

    Returns:
        Scalar float32 tensor.
    """
    prob = torch.clamp(logits.float().sigmoid(), SIGMOID_CLAMP, 1 - SIGMOID_CLAMP)
    peak = target.eq(1)
    pos = -torch.log(prob + _LOG_EPS) * (1 - prob).pow(alpha)
    neg = -torch.log(1 - prob + _LOG_EPS) * prob.pow(alpha) * (1 - target).pow(gamma)
    loss = torch.where(peak, pos, neg).sum()
    return loss / peak.sum().clamp(min=1)


def gather_regression(task_maps: dict[str, Tensor], indices: Tensor) -> Tensor:
    """The head's regression channels at the given cells.

    Args:
        task_maps: one task's head outputs, ``reg [B, 2, h, w]``, ``height [B, 1, h, w]``,
            ``dim [B, 3, h, w]``, ``rot [B, 2, h, w]``, ``vel [B, 2, h, w]``.
        indices: ``Tensor[B, K]`` int64 flattened cells ``iy * w + ix``.

    Returns:
        ``Tensor[B, K, 10]`` float32 in target channel order.
    """
    maps = torch.cat([task_maps[name] for name in REGRESSION_HEADS], dim=1).float()  # [B, 10, h, w]
    flat = maps.flatten(2)  # [B, 10, h*w]
    gathered = torch.gather(flat, 2, indices[:, None, :].expand(-1, flat.shape[1], -1))  # [B, 10, K]
    return gathered.transpose(1, 2)


def regression_l1_loss(pred: Tensor, target: TaskTargets, code_weights: Tensor) -> Tensor:
    """Weighted L1 over the filled slots, divided by the number of objects (+1e-4).

    Target entries that are NaN (unknown velocity) get weight 0, as in mmdet3d.

    Args:
        pred: ``Tensor[B, K, 10]`` gathered predictions.
        target: the task's targets (``boxes [B, K, 10]``, ``mask [B, K]``).
        code_weights: ``Tensor[10]`` per-channel weights.

    Returns:
        Scalar float32 tensor.
    """
    known = ~torch.isnan(target.boxes)
    weights = target.mask[..., None] * known * code_weights  # [B, K, 10]
    diff = torch.where(known, pred - target.boxes, torch.zeros_like(pred)).abs()
    return (diff * weights).sum() / (target.mask.sum() + 1e-4)


def centerpoint_loss(task_outputs: list[dict[str, Tensor]], targets: list[TaskTargets],
                     train_cfg: TrainConfig) -> LossTerms:
    """Sum over tasks of the weighted heatmap focal loss and regression L1 loss.

    Args:
        task_outputs: per task the head maps (``heatmap`` logits ``[B, C, h, w]`` and the
            five regression maps), as ``CenterPoint.forward_dense`` returns them.
        targets: per task :func:`centerpoint_deploy.train.targets.build_targets` output.
        train_cfg: ``code_weights``, ``heatmap_weight``, ``bbox_weight``.
    """
    device = targets[0].heatmap.device
    code_weights = torch.tensor(train_cfg.code_weights, dtype=torch.float32, device=device)
    heatmap = torch.zeros((), device=device)
    bbox = torch.zeros((), device=device)
    for maps, target in zip(task_outputs, targets, strict=True):
        heatmap = heatmap + train_cfg.heatmap_weight * gaussian_focal_loss(maps["heatmap"], target.heatmap)
        pred = gather_regression(maps, target.indices)
        bbox = bbox + train_cfg.bbox_weight * regression_l1_loss(pred, target, code_weights)
    return LossTerms(total=heatmap + bbox, heatmap=heatmap, bbox=bbox)
