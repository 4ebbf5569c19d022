"""Full post-processing (tasks, labels, sorting) and the rot_y_axis_reference round trip."""

from __future__ import annotations

import math

import pytest
import torch

from centerpoint_deploy.errors import BackendError
from centerpoint_deploy.postprocess import postprocess
from centerpoint_deploy.postprocess.rot_reference import apply_rot_y_axis_reference, undo_rot_y_axis_reference

from .test_decode import blank_maps, place


def random_maps(seed: int, num_classes: int = 5, batch: int = 2) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shapes = {"heatmap": num_classes, "reg": 2, "height": 1, "dim": 3, "rot": 2, "vel": 2}
    maps = {name: torch.randn(batch, ch, 64, 64, generator=generator) for name, ch in shapes.items()}
    maps["heatmap"] = maps["heatmap"] * 2 - 3  # a few hundred cells above the 0.1 threshold
    return maps


def test_two_tasks_offset_labels_and_merge_by_score(make_config) -> None:
    config = make_config(head={"tasks": [{"class_names": ["car", "truck"]},
                                         {"class_names": ["bus", "bicycle", "pedestrian"]}]},
                         nms={"min_radius": [1.0, 4.0]})
    first, second = blank_maps(num_classes=2), blank_maps(num_classes=3)
    place(first, cls=1, y=10, x=10, logit=1.0)  # truck, score 0.73
    place(second, cls=2, y=30, x=30, logit=2.0)  # pedestrian, 0.88
    place(second, cls=0, y=30, x=34, logit=1.5)  # bus 1.6 m from it: 2.56 m² <= 4 -> suppressed
    place(second, cls=1, y=50, x=50, logit=0.5)  # bicycle, 0.62
    detections = postprocess([first, second], config)
    assert len(detections) == 1
    assert detections[0].labels.tolist() == [4, 1, 3]
    assert detections[0].scores.tolist() == pytest.approx([1 / (1 + math.exp(-v)) for v in (2.0, 1.0, 0.5)])


def test_post_max_size_applies_per_task(make_config) -> None:
    config = make_config(head={"tasks": [{"class_names": ["car", "truck"]},
                                         {"class_names": ["bus", "bicycle", "pedestrian"]}]},
                         nms={"min_radius": [1.0, 1.0], "post_max_size": 1})
    first, second = blank_maps(num_classes=2), blank_maps(num_classes=3)
    place(first, cls=0, y=10, x=10, logit=3.0)
    place(first, cls=0, y=20, x=20, logit=2.0)
    place(second, cls=0, y=40, x=40, logit=1.0)
    assert postprocess([first, second], config)[0].labels.tolist() == [0, 2]


def test_batch_items_are_independent(tiny_config) -> None:
    maps = random_maps(seed=0)
    both = postprocess([maps], tiny_config)
    alone = postprocess([{k: v[1:] for k, v in maps.items()}], tiny_config)
    assert len(both) == 2
    assert torch.equal(both[1].boxes, alone[0].boxes) and torch.equal(both[1].labels, alone[0].labels)
    assert 0 < len(both[0]) <= tiny_config.nms.post_max_size
    assert torch.all(both[0].scores[:-1] >= both[0].scores[1:])


def test_wrong_number_of_tasks_raises(tiny_config) -> None:
    with pytest.raises(BackendError, match="got head maps for 2 tasks, the config has 1"):
        postprocess([blank_maps(), blank_maps()], tiny_config)


def test_rot_y_axis_reference_round_trip_gives_identical_boxes(tiny_config) -> None:
    maps = random_maps(seed=1)
    exported = apply_rot_y_axis_reference(maps)
    restored = undo_rot_y_axis_reference(exported)
    for name in maps:
        assert torch.equal(restored[name], maps[name]), name
    direct, via_export = postprocess([maps], tiny_config), postprocess([restored], tiny_config)
    for a, b in zip(direct, via_export):
        assert torch.equal(a.boxes, b.boxes) and torch.equal(a.scores, b.scores) and torch.equal(a.labels, b.labels)


def test_rot_y_axis_reference_is_what_autoware_decodes() -> None:
    theta = torch.tensor(0.3)
    maps = blank_maps()
    maps["rot"][0, :, 0, 0] = torch.stack([torch.sin(theta), torch.cos(theta)])
    maps["dim"][0, :, 0, 0] = torch.log(torch.tensor([4.0, 2.0, 1.5]))
    exported = apply_rot_y_axis_reference(maps)
    rot, dim = exported["rot"][0, :, 0, 0], exported["dim"][0, :, 0, 0].exp()
    autoware_yaw = -torch.atan2(rot[0], rot[1]) - math.pi / 2  # Autoware's decode
    assert math.remainder(float(autoware_yaw - theta), 2 * math.pi) == pytest.approx(0.0, abs=1e-6)
    assert dim.tolist() == pytest.approx([2.0, 4.0, 1.5])  # w = exp(dim[0]), l = exp(dim[1])
    assert exported["rot"].data_ptr() != maps["rot"].data_ptr()  # input maps untouched
