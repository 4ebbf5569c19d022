"""The spread of the node's non-deterministic voxelization over shuffle seeds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from centerpoint_deploy.errors import EvaluationError
from centerpoint_deploy.evaluate.data_classes import SampleBoxes, t4_metric_config
from centerpoint_deploy.evaluate.node_spread import box_movement, seed_detectors, voxelization_spread

from .test_eval_runner import CLASSES, _tiny_detector, config, dataset  # noqa: F401  (fixtures)


def samples(rows, names, scores) -> SampleBoxes:
    boxes = np.array([[x, y, 0, 2, 1, 1, 0, 0, 0] for x, y in rows], dtype=np.float64).reshape(-1, 9)
    k = len(rows)
    return SampleBoxes(boxes, np.array(names), np.array(scores, dtype=np.float64), np.array([""] * k),
                       np.full(k, -1))


def test_box_movement_matches_same_class_within_the_gate() -> None:
    ref = {"t": samples([(0, 0), (10, 0), (20, 0)], ["car", "car", "pedestrian"], [0.9, 0.8, 0.7])}
    other = {"t": samples([(0.3, 0.4), (10, 0), (20, 0)], ["car", "truck", "pedestrian"], [0.8, 0.8, 0.7])}
    moved = box_movement(ref, other, CLASSES)
    assert moved["matched_share"] == pytest.approx(2 / 3)  # the truck does not match the car
    assert moved["center_shift_mean"] == pytest.approx(0.25)  # (0.5 + 0) / 2
    assert moved["score_change_mean"] == pytest.approx(0.05)


def test_spread_over_seeds_writes_both_views(tmp_path: Path, dataset, config) -> None:  # noqa: F811
    detector = _tiny_detector(config)
    with pytest.raises(EvaluationError, match="two distinct seeds"):
        seed_detectors(detector, [1, 1])
    per_seed = seed_detectors(detector, [0, 1])
    assert all(d.config.voxelization.mode == "autoware" for d in per_seed.values())
    generator = torch.Generator().manual_seed(0)  # ~80 points per 0.4 m pillar: the shuffle decides which 32 count
    dense = torch.cat([torch.rand(2000, 2, generator=generator) * 2, torch.rand(2000, 1, generator=generator),
                       torch.rand(2000, 2, generator=generator)], dim=1)
    first, second = (d.run_stages(dense).spatial_features for d in per_seed.values())
    assert not torch.equal(first, second)

    summary = voxelization_spread(dataset, detector, tmp_path / "spread", t4_metric_config(CLASSES), seeds=(0, 1))
    assert set(summary["views"]) == {"mmdet3d", "autoware"}
    assert set(summary["views"]["mmdet3d"]["mAP"]["per_seed"]) == {"seed-0", "seed-1"}
    assert set(summary["views"]["autoware"]["movement"]) == {"seed-1"}
    assert json.loads((tmp_path / "spread" / "voxelization_spread.json").read_text()) == summary
    assert "spread over shuffle seeds [0, 1]" in (tmp_path / "spread" / "voxelization_spread.md").read_text()
