"""Training targets against hand-computed values on the tiny grid (0.4 m cells, origin -12.8 m)."""

from __future__ import annotations

import math

import pytest
import torch

from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.errors import DatasetError
from centerpoint_deploy.train.config import TrainConfig
from centerpoint_deploy.train.targets import _rank_within_group, build_targets, gaussian_radius

# A 4 m x 2 m car centred at cell (ix, iy) = (34, 26) + (0.5, 0.25):
# x = -12.8 + 34.5 * 0.4 = 1.0, y = -12.8 + 26.25 * 0.4 = -2.3.
CAR = [1.0, -2.3, 0.5, 4.0, 2.0, 1.5, 0.3, 1.0, -2.0]


def test_gaussian_radius_hand_value() -> None:
    # 10 x 5 cells, overlap 0.1: r1 = (15 + sqrt(225 - 4 * 45 / 1.1)) / 2 = 11.42,
    # r2 = (30 + sqrt(900 - 16 * 45)) / 2 = 21.71, r3 = (-3 + sqrt(9 + 72)) / 2 = 3.
    r = gaussian_radius(torch.tensor([5.0]), torch.tensor([10.0]), 0.1)
    assert r.item() == pytest.approx(3.0)
    # Square 4 x 4, overlap 0.5: r3 = (-8 + sqrt(64 + 4 * 2 * 8)) / 2 = 1.6569 < r1, r2.
    r = gaussian_radius(torch.tensor([4.0]), torch.tensor([4.0]), 0.5)
    assert r.item() == pytest.approx((-8 + math.sqrt(128)) / 2)


def test_single_box_targets(tiny_config: ModelConfig, train_cfg: TrainConfig) -> None:
    boxes = torch.tensor([CAR])
    (target,) = build_targets([boxes], [torch.tensor([0])], tiny_config, train_cfg)
    heat = target.heatmap
    assert heat.shape == (1, 5, 64, 64)
    # Peak 1 at the centre cell of class 0 only; radius rule -> 3 (min_radius 2 does not bite).
    assert heat[0, 0, 26, 34].item() == 1.0
    assert heat[0, 1:].abs().sum().item() == 0.0
    assert int((heat[0, 0] > 0).sum()) == 7 * 7
    sigma2 = 2 * (7 / 6) ** 2
    assert heat[0, 0, 26, 37].item() == pytest.approx(math.exp(-9 / sigma2), rel=1e-6)
    assert heat[0, 0, 27, 35].item() == pytest.approx(math.exp(-2 / sigma2), rel=1e-6)
    assert heat[0, 0, 26, 38].item() == 0.0
    # Regression slot 0.
    assert target.mask.tolist()[0] == [True] + [False] * 7
    assert int(target.indices[0, 0]) == 26 * 64 + 34
    expected = [0.5, 0.25, 0.5, math.log(4.0), math.log(2.0), math.log(1.5),
                math.sin(0.3), math.cos(0.3), 1.0, -2.0]
    assert target.boxes[0, 0].tolist() == pytest.approx(expected, abs=1e-5)
    assert target.boxes[0, 1:].abs().sum().item() == 0.0


def test_min_radius_and_max_merge(tiny_config: ModelConfig, train_cfg: TrainConfig) -> None:
    # A 0.8 m x 0.8 m pedestrian: 2 x 2 cells -> radius rule < 1 -> min_radius 2 (5 x 5 cells).
    ped = [1.0, -2.3, 0.5, 0.8, 0.8, 1.7, 0.0, 0.0, 0.0]
    # A second one two cells to the right: the Gaussians overlap and merge by max.
    ped2 = [1.8, -2.3, 0.5, 0.8, 0.8, 1.7, 0.0, 0.0, 0.0]
    (target,) = build_targets([torch.tensor([ped, ped2])], [torch.tensor([4, 4])], tiny_config, train_cfg)
    heat = target.heatmap[0, 4]
    assert heat[26, 34].item() == 1.0 and heat[26, 36].item() == 1.0
    sigma2 = 2 * (5 / 6) ** 2
    assert heat[26, 35].item() == pytest.approx(math.exp(-1 / sigma2), rel=1e-6)
    assert int((heat > 0).sum()) == 5 * 7  # union of two 5 x 5 windows shifted by 2 columns


def test_slots_skip_outside_and_truncate(tiny_config: ModelConfig) -> None:
    outside = list(CAR)
    outside[0] = 13.0  # beyond x_max = 12.8
    boxes = torch.tensor([CAR, outside, CAR, CAR])
    cfg = TrainConfig(max_objs=3)
    (target,) = build_targets([boxes, boxes[:1]], [torch.tensor([0, 1, 2, 3]), torch.tensor([1])],
                              tiny_config, cfg)
    # Point cloud 0: slot 1 is the outside box (empty), the 4th box is past max_objs.
    assert target.mask.tolist() == [[True, False, True], [True, False, False]]
    assert target.heatmap[0, 0].max().item() == 1.0 and target.heatmap[0, 2].max().item() == 1.0
    assert target.heatmap[0, 1].max().item() == 0.0 and target.heatmap[0, 3].max().item() == 0.0
    assert target.heatmap[1, 1].max().item() == 1.0


def test_tasks_split_classes(tiny_config: ModelConfig, train_cfg: TrainConfig) -> None:
    data = tiny_config.to_dict()
    data["head"]["tasks"] = [{"class_names": ["car"]}, {"class_names": ["truck", "bus", "bicycle", "pedestrian"]}]
    data["nms"]["min_radius"] = [1.0, 1.0]
    two_tasks = ModelConfig.from_dict(data)
    boxes = torch.tensor([CAR, CAR])
    cars, rest = build_targets([boxes], [torch.tensor([3, 0])], two_tasks, train_cfg)
    assert cars.heatmap.shape[1] == 1 and rest.heatmap.shape[1] == 4
    assert cars.heatmap[0, 0, 26, 34].item() == 1.0 and rest.heatmap[0, 2, 26, 34].item() == 1.0
    assert cars.mask[0].tolist()[:2] == [True, False] and rest.mask[0].tolist()[:2] == [True, False]


def test_no_boxes_gives_empty_targets(tiny_config: ModelConfig, train_cfg: TrainConfig) -> None:
    (target,) = build_targets([torch.zeros(0, 9)], [torch.zeros(0, dtype=torch.long)], tiny_config, train_cfg)
    assert target.heatmap.abs().sum().item() == 0.0 and not target.mask.any()


def test_bad_labels_and_shapes_raise(tiny_config: ModelConfig, train_cfg: TrainConfig) -> None:
    with pytest.raises(DatasetError, match=r"\[0, 5\)"):
        build_targets([torch.tensor([CAR])], [torch.tensor([5])], tiny_config, train_cfg)
    with pytest.raises(DatasetError, match=r"\[M, 9\]"):
        build_targets([torch.zeros(2, 7)], [torch.zeros(2, dtype=torch.long)], tiny_config, train_cfg)


def test_rank_within_group() -> None:
    assert _rank_within_group(torch.tensor([0, 0, 2, 2, 2]), 3).tolist() == [0, 1, 0, 1, 2]
