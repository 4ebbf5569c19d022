"""Box-level verification under the node's post-processing."""

from __future__ import annotations

import dataclasses

import torch

from centerpoint_deploy.backends.factory import create_backends
from centerpoint_deploy.config import load_config
from centerpoint_deploy.config.schema import HeadTaskConfig
from centerpoint_deploy.detector import Detector
from centerpoint_deploy.verify.boxes import BoxTolerance
from centerpoint_deploy.verify.node_view import compare_node_boxes


def maps_with(logits: dict[tuple[int, int], float]) -> dict[str, torch.Tensor]:
    maps = {"heatmap": torch.full((1, 5, 64, 64), -30.0), "reg": torch.zeros(1, 2, 64, 64),
            "height": torch.zeros(1, 1, 64, 64), "dim": torch.zeros(1, 3, 64, 64),
            "rot": torch.zeros(1, 2, 64, 64), "vel": torch.zeros(1, 2, 64, 64)}
    maps["rot"][:, 1] = 1.0  # cos = 1: yaw-norm 1 passes every threshold
    for (y, x), logit in logits.items():
        maps["heatmap"][0, 0, y, x] = logit
    return maps


def test_node_boxes_pass_near_a_threshold_and_fail_far_from_it() -> None:
    config = load_config("tiny")
    encoder, head, rot = create_backends("pytorch", config, device="cpu")
    reference = Detector(config, encoder, head, rot_y_axis_reference=rot)
    tol = BoxTolerance(threshold_margin=0.01)
    same = compare_node_boxes(reference, maps_with({(10, 10): 2.0}), maps_with({(10, 10): 2.0}), tol)
    assert same.passed and same.num_matched == 1
    # a car at sigmoid(-0.62) = 0.350 in the reference, 0.348 in the test: it crosses the node's 0.35 by a hair
    near = compare_node_boxes(reference, maps_with({(10, 10): -0.619}), maps_with({(10, 10): -0.628}), tol)
    assert near.passed and near.num_ref == 1 and near.num_test == 0
    # a 0.88 box missing in the test is a real difference
    far = compare_node_boxes(reference, maps_with({(10, 10): 2.0, (40, 40): 2.0}), maps_with({(10, 10): 2.0}), tol)
    assert not far.passed and "reference" in " ".join(far.reasons)
    assert compare_node_boxes(Detector(_two_tasks(config), encoder, head), {}, {}, tol) is None


def _two_tasks(config):
    head = dataclasses.replace(config.head, tasks=(HeadTaskConfig(("car", "truck")),
                                                   HeadTaskConfig(("bus", "bicycle", "pedestrian"))))
    return dataclasses.replace(config, head=head, nms=dataclasses.replace(config.nms, min_radius=(1.0, 1.0)))
