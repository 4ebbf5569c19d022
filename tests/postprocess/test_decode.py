"""Decoding constructed head maps into boxes with known values."""

from __future__ import annotations

import math

import pytest
import torch

from centerpoint_deploy.errors import BackendError
from centerpoint_deploy.postprocess.decode import decode_task

LOW = -30.0  # logit of empty cells: sigmoid ~ 1e-13


def blank_maps(num_classes: int = 5, height: int = 64, width: int = 64) -> dict[str, torch.Tensor]:
    return {
        "heatmap": torch.full((1, num_classes, height, width), LOW),
        "reg": torch.zeros(1, 2, height, width),
        "height": torch.zeros(1, 1, height, width),
        "dim": torch.zeros(1, 3, height, width),
        "rot": torch.zeros(1, 2, height, width),
        "vel": torch.zeros(1, 2, height, width),
    }


def place(maps: dict, cls: int, y: int, x: int, logit: float, reg=(0.0, 0.0), z=0.0, lwh=(1.0, 1.0, 1.0),
          sin_cos=(0.0, 1.0), vel=(0.0, 0.0)) -> None:
    maps["heatmap"][0, cls, y, x] = logit
    maps["reg"][0, :, y, x] = torch.tensor(reg)
    maps["height"][0, 0, y, x] = z
    maps["dim"][0, :, y, x] = torch.log(torch.tensor(lwh))
    maps["rot"][0, :, y, x] = torch.tensor(sin_cos)
    maps["vel"][0, :, y, x] = torch.tensor(vel)


def test_two_known_boxes(tiny_config) -> None:
    maps = blank_maps()
    place(maps, cls=2, y=10, x=20, logit=2.0, reg=(0.25, 0.5), z=0.7, lwh=(4.0, 2.0, 1.5), sin_cos=(1.0, 0.0), vel=(1.5, -0.5))
    place(maps, cls=4, y=40, x=3, logit=1.0, reg=(0.5, 0.75), z=-1.25, lwh=(0.5, 0.6, 1.7), sin_cos=(-1.0, -1.0))
    decoded = decode_task(maps, tiny_config)
    assert decoded.boxes.shape == (1, 100, 9) and decoded.valid.shape == (1, 100)
    assert decoded.valid[0].tolist() == [True, True] + [False] * 98
    assert decoded.labels[0, :2].tolist() == [2, 4]
    assert decoded.scores[0, :2].tolist() == pytest.approx([1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(-1.0))])
    # x = (20 + 0.25) * 0.4 - 12.8 = -4.7, y = (10 + 0.5) * 0.4 - 12.8 = -8.6
    assert decoded.boxes[0, 0].tolist() == pytest.approx([-4.7, -8.6, 0.7, 4.0, 2.0, 1.5, math.pi / 2, 1.5, -0.5], abs=1e-5)
    # x = 3.5 * 0.4 - 12.8 = -11.4, y = 40.75 * 0.4 - 12.8 = 3.5, yaw = atan2(-1, -1)
    assert decoded.boxes[0, 1].tolist() == pytest.approx([-11.4, 3.5, -1.25, 0.5, 0.6, 1.7, -3 * math.pi / 4, 0, 0], abs=1e-5)


def test_rows_are_y_on_a_non_square_grid(make_config) -> None:
    config = make_config(voxelization={"point_cloud_range": [-12.8, -6.4, -3.0, 12.8, 6.4, 5.0]})
    assert config.feature_map_shape == (32, 64)
    maps = blank_maps(height=32, width=64)
    place(maps, cls=0, y=5, x=40, logit=3.0)
    box = decode_task(maps, config).boxes[0, 0]
    assert box[:2].tolist() == pytest.approx([40 * 0.4 - 12.8, 5 * 0.4 - 6.4], abs=1e-5)


def test_out_size_factor_scales_cells(make_config) -> None:
    config = make_config(backbone={"layer_strides": [2, 2, 2]}, neck={"upsample_strides": [1, 2, 4]},
                         decode={"out_size_factor": 2})
    maps = blank_maps(height=32, width=32)
    place(maps, cls=1, y=3, x=7, logit=3.0, reg=(0.5, 0.5))
    box = decode_task(maps, config).boxes[0, 0]
    assert box[:2].tolist() == pytest.approx([7.5 * 2 * 0.4 - 12.8, 3.5 * 2 * 0.4 - 12.8], abs=1e-5)


def test_dim_is_raw_without_norm_bbox(make_config) -> None:
    maps = blank_maps()
    place(maps, cls=0, y=1, x=1, logit=3.0)
    maps["dim"][0, :, 1, 1] = torch.tensor([4.0, 2.0, 1.5])
    box = decode_task(maps, make_config(head={"norm_bbox": False})).boxes[0, 0]
    assert box[3:6].tolist() == [4.0, 2.0, 1.5]


def test_score_threshold_is_strict(make_config) -> None:
    maps = blank_maps()
    place(maps, cls=0, y=1, x=1, logit=0.0)  # score exactly 0.5
    place(maps, cls=1, y=2, x=2, logit=0.01)
    decoded = decode_task(maps, make_config(decode={"score_threshold": 0.5}))
    assert decoded.labels[0, :2].tolist() == [1, 0]
    assert decoded.valid[0, :2].tolist() == [True, False]


def test_post_center_range_is_inclusive(make_config) -> None:
    maps = blank_maps()
    place(maps, cls=0, y=10, x=20, logit=3.0, z=2.0)
    x = float(torch.tensor(20.0) * 1 * 0.4 + -12.8)  # the float32 value decode computes
    y = float(torch.tensor(10.0) * 1 * 0.4 + -12.8)
    on_edge = make_config(decode={"post_center_range": [x, y, -10.0, 10.0, 10.0, 2.0]})
    assert decode_task(maps, on_edge).valid[0, 0]
    above = float(torch.nextafter(torch.tensor(x), torch.tensor(1.0)))
    beyond = make_config(decode={"post_center_range": [above, y, -10.0, 10.0, 10.0, 2.0]})
    assert not decode_task(maps, beyond).valid[0, 0]
    z_beyond = make_config(decode={"post_center_range": [x, y, -10.0, 10.0, 10.0, 1.99]})
    assert not decode_task(maps, z_beyond).valid[0, 0]


def test_top_k_is_per_class_then_global(make_config) -> None:
    config = make_config(decode={"max_num": 3})
    maps = blank_maps()
    for x, logit in enumerate([5.0, 4.0, 3.0, 2.0]):
        place(maps, cls=0, y=0, x=x, logit=logit)
    place(maps, cls=3, y=9, x=9, logit=3.5)
    decoded = decode_task(maps, config)
    assert decoded.scores.shape == (1, 3)
    assert decoded.labels[0].tolist() == [0, 0, 3]
    assert decoded.boxes[0, :, 0].tolist() == pytest.approx([0.2 - 12.8 - 0.2, 0.4 - 12.8, 9 * 0.4 - 12.8], abs=1e-5)


def test_missing_or_misshaped_maps_raise(tiny_config) -> None:
    maps = blank_maps()
    del maps["vel"]
    with pytest.raises(BackendError, match=r"head outputs lack \['vel'\]"):
        decode_task(maps, tiny_config)
    maps = blank_maps()
    maps["rot"] = torch.zeros(1, 1, 64, 64)
    with pytest.raises(BackendError, match=r"'rot' has shape \[1, 1, 64, 64\], expected \[1, 2, 64, 64\]"):
        decode_task(maps, tiny_config)
