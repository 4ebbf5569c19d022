"""Box matching and the box-level pass rule on hand-built detections."""

import math

import numpy as np
import pytest
import torch

from centerpoint_deploy.errors import VerificationError
from centerpoint_deploy.structures import Detections
from centerpoint_deploy.verify.boxes import BoxTolerance, compare_boxes, match_boxes, wrap_angle


def dets(rows: list[list[float]], scores: list[float], labels: list[int]) -> Detections:
    boxes = torch.tensor(rows, dtype=torch.float32).reshape(-1, 9)
    return Detections(boxes, torch.tensor(scores, dtype=torch.float32), torch.tensor(labels, dtype=torch.int64))


def box(x: float, y: float, yaw: float = 0.0, l: float = 4.0, vx: float = 0.0) -> list[float]:
    return [x, y, 0.5, l, 2.0, 1.5, yaw, vx, 0.0]


def test_matching_is_greedy_by_reference_score_same_class_within_gate():
    ref = dets([box(0, 0), box(0.3, 0), box(10, 10)], [0.5, 0.9, 0.8], [0, 0, 1])
    # test box 0 at x=0.2 is nearest to both ref 0 (0.2 m) and ref 1 (0.1 m); ref 1 has the
    # higher score so it takes it; ref 0 then takes test box 1 (x=-0.4, 0.4 m away).
    # test box 2 has the right place for ref 2 but the wrong class.
    test = dets([box(0.2, 0), box(-0.4, 0), box(10, 10)], [0.9, 0.5, 0.8], [0, 0, 0])
    ri, ti = match_boxes(ref, test, gate=1.0)
    assert sorted(zip(ri.tolist(), ti.tolist())) == [(0, 1), (1, 0)]
    assert match_boxes(ref, test, gate=0.15)[0].tolist() == [1]


def test_identical_detections_pass():
    d = dets([box(1, 2, 0.3), box(-5, 4, -2.0)], [0.9, 0.4], [0, 4])
    result = compare_boxes(d, d, BoxTolerance(), score_threshold=0.1)
    assert result and result.num_matched == 2 and result.matched_share == 1.0
    assert result.max_center == 0.0 and result.max_yaw == 0.0 and result.unmatched == []


def test_empty_on_both_sides_passes():
    result = compare_boxes(Detections.empty(), Detections.empty(), BoxTolerance(), 0.1)
    assert result and result.matched_share == 1.0 and math.isnan(result.max_center)


def test_yaw_difference_is_wrapped():
    ref = dets([box(0, 0, yaw=math.pi - 1e-4)], [0.9], [0])
    test = dets([box(0, 0, yaw=-math.pi + 1e-4)], [0.9], [0])
    result = compare_boxes(ref, test, BoxTolerance(), 0.1)
    assert result.max_yaw == pytest.approx(2e-4, abs=1e-6)
    assert result
    np.testing.assert_allclose(wrap_angle(np.array([3 * math.pi / 2, -3 * math.pi / 2])), [-math.pi / 2, math.pi / 2])


def test_each_difference_over_tolerance_fails_with_its_name():
    ref = dets([box(0, 0)], [0.9], [0])
    cases = {"centre": dets([box(0.01, 0)], [0.9], [0]), "size": dets([box(0, 0, l=4.01)], [0.9], [0]),
             "yaw": dets([box(0, 0, yaw=0.01)], [0.9], [0]), "score": dets([box(0, 0)], [0.89], [0]),
             "velocity": dets([box(0, 0, vx=0.01)], [0.9], [0])}
    for what, test in cases.items():
        result = compare_boxes(ref, test, BoxTolerance(), 0.1)
        assert not result, what
        assert len(result.reasons) == 1 and what in result.reasons[0]


def test_unmatched_box_near_threshold_is_tolerated_far_from_it_fails():
    ref = dets([box(0, 0), box(5, 5)], [0.9, 0.1004], [0, 1])
    test = dets([box(0, 0)], [0.9], [0])
    near = compare_boxes(ref, test, BoxTolerance(), score_threshold=0.1)
    assert near and near.num_matched == 1 and near.matched_share == 0.5
    assert [(u.side, u.index, u.near_threshold) for u in near.unmatched] == [("reference", 1, True)]

    ref_far = dets([box(0, 0), box(5, 5)], [0.9, 0.3], [0, 1])
    far = compare_boxes(ref_far, test, BoxTolerance(), score_threshold=0.1)
    assert not far and far.reasons[0].startswith("1 reference box(es) have no match") and "#1 label 1" in far.reasons[0]
    extra = compare_boxes(test, ref_far, BoxTolerance(), score_threshold=0.1)
    assert not extra and extra.unmatched[0].side == "test"


def test_a_share_of_unmatched_boxes_may_be_allowed_per_side():
    ref = dets([box(10.0 * i, 0) for i in range(10)], [0.9] * 10, [0] * 10)
    one_gone = dets([box(10.0 * i, 0) for i in range(9)], [0.9] * 9, [0] * 9)
    assert not compare_boxes(ref, one_gone, BoxTolerance(), 0.1)
    allowed = compare_boxes(ref, one_gone, BoxTolerance(max_unmatched_share=0.1), 0.1)
    assert allowed and allowed.matched_share == 0.9 and len(allowed.unmatched) == 1
    two_gone = compare_boxes(ref, dets([box(10.0 * i, 0) for i in range(8)], [0.9] * 8, [0] * 8),
                             BoxTolerance(max_unmatched_share=0.1), 0.1)
    assert not two_gone and "(1 allowed)" in two_gone.reasons[0]


def test_box_tolerance_rejects_bad_values():
    with pytest.raises(VerificationError, match="center"):
        BoxTolerance(center=-1.0)
    with pytest.raises(VerificationError, match="gate"):
        BoxTolerance(gate=0.0)
    with pytest.raises(VerificationError, match="max_unmatched_share"):
        BoxTolerance(max_unmatched_share=1.5)
