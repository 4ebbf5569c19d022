"""Losses against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from centerpoint_deploy.train.config import TrainConfig
from centerpoint_deploy.train.losses import (
    centerpoint_loss, gather_regression, gaussian_focal_loss, regression_l1_loss,
)
from centerpoint_deploy.train.targets import TaskTargets

LOG2 = math.log(2.0)


def test_focal_loss_hand_case() -> None:
    # p = 0.5 everywhere. Peak: log2 * 0.5^2. Cell with target 0.5: log2 * 0.5^2 * 0.5^4.
    # Target 0 cell with p = 0.5: log2 * 0.25. One peak -> divide by 1.
    logits = torch.zeros(1, 1, 1, 3)
    target = torch.tensor([[[[1.0, 0.5, 0.0]]]])
    expected = LOG2 * 0.25 + LOG2 * 0.25 * 0.0625 + LOG2 * 0.25
    assert gaussian_focal_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_focal_loss_divides_by_peaks_and_clamps() -> None:
    # Two peaks with p = 0.5 -> (2 * log2 * 0.25) / 2.
    assert gaussian_focal_loss(torch.zeros(1, 2, 1, 1), torch.ones(1, 2, 1, 1)).item() == pytest.approx(LOG2 * 0.25)
    # No peak: divide by 1. A logit of 100 on a background cell is clamped to 1 - 1e-4.
    loss = gaussian_focal_loss(torch.full((1, 1, 1, 1), 100.0), torch.zeros(1, 1, 1, 1))
    assert loss.item() == pytest.approx(-math.log(1e-4) * (1 - 1e-4) ** 2, rel=1e-3)


def _maps(values: torch.Tensor) -> dict[str, torch.Tensor]:
    """Head maps [1, C, 2, 2] from a [10, 2, 2] stack of the 10 regression channels."""
    v = values[None]
    return {"heatmap": torch.zeros(1, 1, 2, 2), "reg": v[:, 0:2], "height": v[:, 2:3],
            "dim": v[:, 3:6], "rot": v[:, 6:8], "vel": v[:, 8:10]}


def test_gather_regression_picks_cells() -> None:
    values = torch.arange(40, dtype=torch.float32).reshape(10, 2, 2)  # channel c, cell k -> 4c + k
    pred = gather_regression(_maps(values), torch.tensor([[3, 0]]))
    assert pred[0, 0].tolist() == [4 * c + 3 for c in range(10)]
    assert pred[0, 1].tolist() == [4 * c for c in range(10)]


def test_l1_weights_mask_and_nan() -> None:
    pred = torch.zeros(1, 2, 10)
    boxes = torch.ones(1, 2, 10)
    boxes[0, 0, 9] = float("nan")  # unknown vy: ignored
    target = TaskTargets(heatmap=torch.zeros(1, 1, 2, 2), boxes=boxes,
                         indices=torch.zeros(1, 2, dtype=torch.long), mask=torch.tensor([[True, False]]))
    weights = torch.tensor(TrainConfig().code_weights)
    # Slot 0: 8 channels * 1 + vx * 0.2 (vy NaN); slot 1 empty. One object (+1e-4).
    assert regression_l1_loss(pred, target, weights).item() == pytest.approx(8.2 / (1 + 1e-4), rel=1e-6)


def test_total_is_weighted_sum() -> None:
    values = torch.zeros(10, 2, 2)
    heat = torch.zeros(1, 1, 2, 2)
    heat[0, 0, 1, 1] = 1.0
    target = TaskTargets(heatmap=heat, boxes=torch.full((1, 1, 10), 2.0),
                         indices=torch.tensor([[3]]), mask=torch.tensor([[True]]))
    cfg = TrainConfig()
    terms = centerpoint_loss([_maps(values)], [target], cfg)
    focal = (LOG2 * 0.25 + 3 * LOG2 * 0.25) / 1  # heatmap logits 0: one peak, three background cells
    l1 = 2.0 * sum(cfg.code_weights) / (1 + 1e-4)
    assert terms.heatmap.item() == pytest.approx(focal, rel=1e-6)
    assert terms.bbox.item() == pytest.approx(0.25 * l1, rel=1e-6)
    assert terms.total.item() == pytest.approx(focal + 0.25 * l1, rel=1e-6)
    assert set(terms.as_floats()) == {"loss", "heatmap", "bbox"}
