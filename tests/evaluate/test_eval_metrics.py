"""Hand-built scenarios with expected metric values written as arithmetic."""

from __future__ import annotations

import math

import numpy as np
import pytest

from centerpoint_deploy.errors import EvaluationError
from centerpoint_deploy.evaluate.algo import calc_ap, calc_tp, greedy_match, yaw_difference
from centerpoint_deploy.evaluate.data_classes import TP_METRICS, MetricConfig, MetricCurves, SampleBoxes
from centerpoint_deploy.evaluate.metrics import evaluate_boxes, evaluate_distance_buckets

CARS = MetricConfig(class_range={"car": 50.0})


def test_perfect_predictions_give_ap_one_and_zero_errors(make_boxes):
    rows = [[1.0, 2.0], [10.0, -3.0], [-20.0, 5.0]]
    gt = make_boxes(rows, ["car"] * 3, attributes=["vehicle.moving"] * 3)
    pred = make_boxes(rows, ["car"] * 3, scores=[0.9, 0.8, 0.7], attributes=["vehicle.moving"] * 3)
    m = evaluate_boxes({"a": pred}, {"a": gt}, CARS)
    assert m.label_aps["car"] == pytest.approx({0.5: 1.0, 1.0: 1.0, 2.0: 1.0, 4.0: 1.0}, abs=1e-12)
    assert m.label_tp_errors["car"] == {name: 0.0 for name in TP_METRICS}
    assert m.mean_ap == pytest.approx(1.0, abs=1e-12)
    assert m.nd_score == pytest.approx(1.0, abs=1e-12)


def test_missing_gt_attribute_gives_attribute_error_one(make_boxes):
    # The devkit's rule: a GT box without attribute is not counted; all uncounted -> error 1.
    gt = make_boxes([[0.0, 0.0]], ["car"])
    pred = make_boxes([[0.0, 0.0]], ["car"], scores=[0.9])
    m = evaluate_boxes({"a": pred}, {"a": gt}, CARS)
    assert m.label_tp_errors["car"]["attr_err"] == 1.0
    assert m.nd_score == pytest.approx((5 * 1.0 + 4 * 1.0 + 0.0) / 10, abs=1e-12)


def test_one_false_positive_above_the_true_positive(make_boxes):
    gt = make_boxes([[0.0, 0.0]], ["car"])
    pred = make_boxes([[10.0, 0.0], [0.0, 0.0]], ["car", "car"], scores=[0.9, 0.5])
    m = evaluate_boxes({"a": pred}, {"a": gt}, CARS)
    # precision [0, 1/2] at recall [0, 1] -> 0.5 * r on the grid r = k / 100.
    expected = sum(max(0.5 * k / 100 - 0.1, 0.0) for k in range(11, 101)) / 90 / 0.9
    for th in CARS.dist_ths:
        assert m.label_aps["car"][th] == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.2)


def test_false_positive_below_the_true_positive_lowers_only_the_last_point(make_boxes):
    gt = make_boxes([[0.0, 0.0]], ["car"])
    pred = make_boxes([[0.0, 0.0], [10.0, 0.0]], ["car", "car"], scores=[0.9, 0.5])
    m = evaluate_boxes({"a": pred}, {"a": gt}, CARS)
    # precision 1 below recall 1; at recall 1 the last (duplicate) point, 1/2, is taken.
    expected = (89 * (1.0 - 0.1) + (0.5 - 0.1)) / 90 / 0.9
    assert m.label_aps["car"][2.0] == pytest.approx(expected, abs=1e-12)


def test_gt_with_zero_points_is_dropped_and_its_prediction_becomes_false_positive(make_boxes):
    gt = make_boxes([[0.0, 0.0], [10.0, 0.0]], ["car", "car"], num_pts=[5, 0])
    pred = make_boxes([[10.0, 0.0], [0.0, 0.0]], ["car", "car"], scores=[0.9, 0.5])
    m = evaluate_boxes({"a": pred}, {"a": gt}, CARS)
    assert m.num_gt["car"] == 1 and m.num_pred["car"] == 2
    assert m.label_aps["car"][2.0] == pytest.approx(0.2)


def test_match_needs_strictly_smaller_distance(make_boxes):
    gt = make_boxes([[0.0, 0.0]], ["car"])
    pred = make_boxes([[0.5, 0.0]], ["car"], scores=[0.9])
    m = evaluate_boxes({"a": pred}, {"a": gt}, CARS)
    assert m.label_aps["car"] == pytest.approx({0.5: 0.0, 1.0: 1.0, 2.0: 1.0, 4.0: 1.0}, abs=1e-12)
    assert m.mean_ap == pytest.approx(0.75, abs=1e-12)
    assert m.label_tp_errors["car"]["trans_err"] == 0.5


def test_yaw_error_of_half_turn_is_zero_for_barrier_and_pi_for_car(make_boxes):
    config = MetricConfig(class_range={"car": 50.0, "barrier": 30.0})
    gt = make_boxes([[0, 0, 0, 4, 2, 1.5, 0.3, 0, 0], [5, 5, 0, 2, 0.5, 1, 0.3, 0, 0]], ["car", "barrier"])
    pred = make_boxes([[0, 0, 0, 4, 2, 1.5, 0.3 + math.pi, 0, 0], [5, 5, 0, 2, 0.5, 1, 0.3 + math.pi, 0, 0]],
                      ["car", "barrier"], scores=[0.9, 0.8])
    m = evaluate_boxes({"a": pred}, {"a": gt}, config)
    assert m.label_tp_errors["car"]["orient_err"] == pytest.approx(math.pi, abs=1e-12)
    assert m.label_tp_errors["barrier"]["orient_err"] == pytest.approx(0.0, abs=1e-12)
    # barrier has no velocity / attribute error; the class means use the car's alone.
    assert math.isnan(m.label_tp_errors["barrier"]["vel_err"])
    assert math.isnan(m.label_tp_errors["barrier"]["attr_err"])
    assert m.tp_errors["orient_err"] == pytest.approx(math.pi / 2, abs=1e-12)
    assert m.tp_errors["vel_err"] == 0.0


def test_scale_and_velocity_errors(make_boxes):
    gt = make_boxes([[0, 0, 0, 4, 2, 1, 0, 1, 0]], ["car"])
    pred = make_boxes([[0, 0, 0, 2, 2, 1, 0, 4, 4]], ["car"], scores=[0.9])
    m = evaluate_boxes({"a": pred}, {"a": gt}, CARS)
    assert m.label_tp_errors["car"]["scale_err"] == pytest.approx(1 - 4 / 8)   # IoU = 2*2*1 / 4*2*1
    assert m.label_tp_errors["car"]["vel_err"] == pytest.approx(5.0)          # |(3, 4)|
    # vel_err 5 -> score clipped at 0 in NDS.
    assert m.tp_scores["vel_err"] == 0.0


def test_class_without_gt_counts_zero_in_map(make_boxes):
    config = MetricConfig(class_range={"car": 50.0, "truck": 50.0})
    gt = make_boxes([[0.0, 0.0]], ["car"], attributes=["vehicle.parked"])
    pred = make_boxes([[0.0, 0.0], [9.0, 9.0]], ["car", "truck"], scores=[0.9, 0.8], attributes=["vehicle.parked"] * 2)
    m = evaluate_boxes({"a": pred}, {"a": gt}, config)
    assert m.mean_dist_aps == pytest.approx({"car": 1.0, "truck": 0.0}, abs=1e-12)
    assert m.mean_ap == pytest.approx(0.5, abs=1e-12)
    assert m.label_tp_errors["truck"] == {name: 1.0 for name in TP_METRICS}
    assert m.tp_errors["trans_err"] == 0.5
    assert m.nd_score == pytest.approx((5 * 0.5 + 5 * 0.5) / 10)


def test_empty_predictions(make_boxes):
    gt = make_boxes([[0.0, 0.0], [3.0, 3.0]], ["car", "car"])
    m = evaluate_boxes({"a": SampleBoxes.empty(), "b": SampleBoxes.empty()}, {"a": gt, "b": SampleBoxes.empty()}, CARS)
    assert m.mean_ap == 0.0 and m.nd_score == 0.0
    assert m.label_tp_errors["car"] == {name: 1.0 for name in TP_METRICS}


def test_recall_never_above_min_recall_gives_tp_error_one(make_boxes):
    # 1 of 10 GT found: max recall 0.1 is not above min_recall 0.1.
    gt = make_boxes([[float(4 * i), 0.0] for i in range(10)], ["car"] * 10)
    pred = make_boxes([[0.0, 0.0]], ["car"], scores=[0.9])
    m = evaluate_boxes({"a": pred}, {"a": gt}, CARS)
    assert m.label_tp_errors["car"]["trans_err"] == 1.0
    assert m.label_aps["car"][2.0] == 0.0


def test_predictions_are_matched_across_samples_in_global_score_order(make_boxes):
    gts = {"a": make_boxes([[0.0, 0.0]], ["car"]), "b": make_boxes([[0.0, 0.0]], ["car"])}
    preds = {"a": make_boxes([[9.0, 0.0]], ["car"], scores=[0.9]), "b": make_boxes([[0.0, 0.0]], ["car"], scores=[0.8])}
    m = evaluate_boxes(preds, gts, CARS)
    # order FP (0.9), TP (0.8): precision [0, 1/2], recall [0, 1/2]; beyond recall 1/2 precision 0.
    expected = sum(max(k / 100 - 0.1, 0.0) for k in range(11, 51)) / 90 / 0.9
    assert m.label_aps["car"][2.0] == pytest.approx(expected, abs=1e-12)


def test_greedy_matching_keeps_separate_state_per_threshold():
    gt_xy = np.array([[0.0, 0.0], [2.0, 0.0]])
    pred_xy = np.array([[0.9, 0.0], [0.1, 0.0]])     # in score order
    matched = greedy_match(np.zeros(2, np.int64), pred_xy, np.zeros(2, np.int64), gt_xy, [0.5, 1.0, 2.0, 4.0])
    # 0.5 m: the first prediction's nearest GT (0.9 m) is too far, so the second takes GT 0.
    # 1 m: the first takes GT 0; the second's nearest free GT is 1.9 m away.
    assert matched.tolist() == [[-1, 0], [0, -1], [0, 1], [0, 1]]


def test_greedy_matching_never_crosses_samples():
    matched = greedy_match(np.array([0, 1, 1]), np.array([[0.0, 0.0], [0.0, 0.0], [0.1, 0.0]]),
                           np.array([1, 0]), np.array([[0.0, 0.0], [0.0, 0.0]]), [1.0])
    assert matched.tolist() == [[1, 0, -1]]


def test_class_range_and_ego_origin(make_boxes):
    gt = make_boxes([[50.5, 0.0]], ["car"])
    pred = make_boxes([[50.5, 0.0]], ["car"], scores=[0.9])
    far = evaluate_boxes({"a": pred}, {"a": gt}, CARS)
    assert far.num_gt["car"] == 0 and far.num_pred["car"] == 0 and far.mean_ap == 0.0
    near = evaluate_boxes({"a": pred}, {"a": gt}, MetricConfig(class_range={"car": 50.0}, ego_origin=(1.0, 0.0)))
    assert near.num_gt["car"] == 1 and near.mean_ap == pytest.approx(1.0, abs=1e-12)


def test_distance_buckets_restrict_gt_and_predictions(make_boxes):
    config = MetricConfig(class_range={"car": 121.0}, distance_buckets=((0.0, 50.0), (50.0, 90.0), (0.0, 121.0)))
    gt = make_boxes([[30.0, 0.0], [0.0, 70.0]], ["car", "car"])
    pred = make_boxes([[30.0, 0.0], [0.0, 70.0], [60.0, 0.0]], ["car"] * 3, scores=[0.9, 0.8, 0.95])
    buckets = evaluate_distance_buckets({"a": pred}, {"a": gt}, config)
    assert list(buckets) == ["0-50m", "50-90m", "0-121m"]
    assert (buckets["0-50m"].num_gt["car"], buckets["0-50m"].num_pred["car"]) == (1, 1)
    assert buckets["0-50m"].mean_ap == pytest.approx(1.0, abs=1e-12)
    assert (buckets["50-90m"].num_gt["car"], buckets["50-90m"].num_pred["car"]) == (1, 2)
    assert buckets["50-90m"].mean_ap == pytest.approx(0.2)   # FP above the TP, as above
    assert buckets["0-121m"].num_pred["car"] == 3


def test_calc_ap_and_calc_tp_on_given_curves():
    grid = np.linspace(0, 1, 101)
    precision = np.where(grid <= 0.6, 0.8, 0.0)
    confidence = np.where(grid <= 0.6, 0.5, 0.0)
    trans = np.full(101, 0.25)
    curves = MetricCurves(grid, precision, confidence, trans, trans, trans, trans, trans)
    assert calc_ap(curves, 0.1, 0.1) == pytest.approx(50 * 0.7 / 90 / 0.9)   # recall 0.11..0.60
    assert curves.max_recall_ind == 60
    assert calc_tp(curves, 0.1, "trans_err") == 0.25


def test_yaw_difference_wraps():
    got = yaw_difference(np.array([3.1, 0.0, 1.0]), np.array([-3.1, 2 * math.pi, 1.0 + math.pi]), 2 * math.pi)
    assert got == pytest.approx([2 * math.pi - 6.2, 0.0, math.pi], abs=1e-12)


def test_bad_inputs_raise_evaluation_errors(make_boxes):
    gt = make_boxes([[0.0, 0.0]], ["car"])
    pred = make_boxes([[0.0, 0.0]], ["car"], scores=[0.9])
    with pytest.raises(EvaluationError, match="same samples"):
        evaluate_boxes({"b": pred}, {"a": gt}, CARS)
    with pytest.raises(EvaluationError, match=r"'bus'"):
        evaluate_boxes({"a": make_boxes([[0.0, 0.0]], ["bus"], scores=[0.9])}, {"a": gt}, CARS)
    many = make_boxes([[float(i), 0.0] for i in range(3)], ["car"] * 3, scores=[0.9, 0.8, 0.7])
    with pytest.raises(EvaluationError, match="3 predictions"):
        evaluate_boxes({"a": many}, {"a": gt}, MetricConfig(class_range={"car": 50.0}, max_boxes_per_sample=2))


def test_random_scenes_give_finite_metrics(make_boxes):
    rng = np.random.default_rng(3)
    config = MetricConfig(class_range={"car": 50.0, "pedestrian": 40.0})
    gts, preds = {}, {}
    for s in range(20):
        k = int(rng.integers(1, 8))
        rows = np.concatenate([rng.uniform(-45, 45, (k, 2)), rng.uniform(-1, 1, (k, 1)), rng.uniform(0.5, 4, (k, 3)),
                               rng.uniform(-3, 3, (k, 1)), rng.normal(0, 1, (k, 2))], axis=1)
        names = rng.choice(["car", "pedestrian"], k)
        attrs = rng.choice(["vehicle.moving", "vehicle.parked"], k)
        gts[str(s)] = make_boxes(rows, names, attributes=attrs)
        noisy = rows + rng.normal(0, 0.5, rows.shape) * [1, 1, 0, 0, 0, 0, 1, 1, 1]
        preds[str(s)] = make_boxes(noisy, names, scores=rng.random(k), attributes=attrs[::-1])
    m = evaluate_boxes(preds, gts, config)
    values = [m.mean_ap, m.nd_score, *m.tp_errors.values()]
    values += [ap for d in m.label_aps.values() for ap in d.values()]
    values += [e for d in m.label_tp_errors.values() for e in d.values()]
    assert np.isfinite(values).all()
    assert 0.0 < m.mean_ap < 1.0 and 0.0 < m.nd_score < 1.0
