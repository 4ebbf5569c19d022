"""Box-level verification under the node's post-processing."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from centerpoint_deploy.variant import VariantSpec, build_detector
from centerpoint_deploy.config import load_config
from centerpoint_deploy.config.schema import HeadTaskConfig
from centerpoint_deploy.detector import Detector
from centerpoint_deploy.verify.boxes import BoxTolerance
from centerpoint_deploy.verify.compare import Tolerance
from centerpoint_deploy.verify.node_view import compare_node_boxes, yaw_norm_slack


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
    reference = build_detector(VariantSpec.parse("pytorch"), config)
    encoder, head = reference.encoder, reference.head
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


def test_a_cell_on_the_yaw_norm_cut_kept_by_the_test_only_is_a_moved_peak() -> None:
    """Two neighbouring cells of one car, 0.4 m apart (within the node's 0.5 m circle NMS): the higher
    one's rot vector is 0.29 long in the reference (under the 0.3 cut: dropped, the other cell kept)
    and 0.31 in the test (kept, the other suppressed). The test's box is the reference's own box of that
    cell: a moved peak once the reference's cells include those within the rot tolerance of the cut."""
    config = load_config("tiny")
    reference = build_detector(VariantSpec.parse("pytorch"), config)
    tol = BoxTolerance(center=0.02, size=0.1, yaw=0.08, score=0.02, velocity=0.15, threshold_margin=0.02,
                       max_flip_share=0.1)
    ref, test = maps_with({(10, 10): 1.0, (10, 11): 1.08}), maps_with({(10, 10): 1.0, (10, 11): 1.08})
    ref["rot"][0, 1, 10, 11], test["rot"][0, 1, 10, 11] = 0.29, 0.31
    loose = compare_node_boxes(reference, ref, test, tol, rot_tolerance=Tolerance(1e-2, 1e-2))
    assert loose.passed and loose.moved == 1 and loose.num_matched == 1
    strict = compare_node_boxes(reference, ref, test, tol)  # the cut not loosened: the cell is not the reference's
    assert not strict.passed and strict.moved == 0 and "centre" in " ".join(strict.reasons)
    assert yaw_norm_slack(Tolerance(1e-2, 1e-2), 0.3) == pytest.approx(2 ** 0.5 * 0.013)


def _two_tasks(config):
    head = dataclasses.replace(config.head, tasks=(HeadTaskConfig(("car", "truck")),
                                                   HeadTaskConfig(("bus", "bicycle", "pedestrian"))))
    return dataclasses.replace(config, head=head, nms=dataclasses.replace(config.nms, min_radius=(1.0, 1.0)))
