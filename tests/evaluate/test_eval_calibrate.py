"""Score-threshold calibration: PR curves, the chosen threshold per class x bin, exact operating points."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from centerpoint_deploy.cli.app import app
from centerpoint_deploy.errors import EvaluationError
from centerpoint_deploy.evaluate.calibrate import (
    CalibrationSettings,
    calibrate_thresholds,
    distance_bins,
    operating_point,
    pr_curve,
)
from centerpoint_deploy.evaluate.data_classes import SampleBoxes
from centerpoint_deploy.evaluate.io import save_boxes
from centerpoint_deploy.postprocess.node_params import ScoreThresholds

runner = CliRunner()
CLASSES = ("car", "pedestrian")


def _boxes(xy: list[tuple[float, float]], names: list[str], scores: list[float] | None = None) -> SampleBoxes:
    k = len(xy)
    rows = np.zeros((k, 9))
    rows[:, :2] = np.array(xy, dtype=np.float64).reshape(k, 2)
    rows[:, 3:6] = (4.0, 2.0, 1.5)
    return SampleBoxes(rows, np.array(names, dtype=str), np.full(k, -1.0) if scores is None else np.array(scores),
                       np.array([""] * k, dtype=str), np.full(k, 5 if scores is None else -1, dtype=np.int64))


def _scene(tp_scores: list[float], fp_scores: list[float], x0: float = 10.0, name: str = "car"
           ) -> tuple[SampleBoxes, SampleBoxes]:
    """GT boxes on a 6 m grid (4 columns) from ``(x0, 0)``: the first ``len(tp_scores)`` predicted
    0.5 m off (true positives), FPs 3 m right and up of grid points (over 4 m from any GT)."""
    n = max(len(tp_scores), len(fp_scores))
    grid = [(x0 + 6.0 * (i % 4), 6.0 * (i // 4)) for i in range(n)]
    gt = _boxes(grid[:len(tp_scores)], [name] * len(tp_scores))
    pred_xy = [(x + 0.5, y) for x, y in grid[:len(tp_scores)]] + [(x + 3.0, y + 3.0) for x, y in grid[:len(fp_scores)]]
    pred = _boxes(pred_xy, [name] * len(pred_xy), list(tp_scores) + list(fp_scores))
    return gt, pred


def test_pr_curve_by_hand() -> None:
    curve = pr_curve(np.array([0.9, 0.8, 0.8, 0.5]), np.array([True, False, True, False]), 3)
    np.testing.assert_allclose(curve.thresholds, [0.9, 0.8, 0.5])  # a tie is one point
    np.testing.assert_allclose(curve.precision, [1, 2 / 3, 1 / 2])
    np.testing.assert_allclose(curve.recall, [1 / 3, 2 / 3, 2 / 3])
    np.testing.assert_allclose(curve.f1, [2 / 4, 4 / 6, 4 / 7])
    assert curve.at(0.85) == pytest.approx((1.0, 1 / 3, 0.5)) and curve.at(0.95) == (0.0, 0.0, 0.0)


def test_distance_bins_follow_the_node() -> None:
    # first bin with radial < limit (strict), float32; beyond the last limit: len(limits)
    xy = np.array([[0.0, 0.0], [49.99, 0.0], [50.0, 0.0], [30.0, 40.0], [0.0, -89.9], [150.0, 0.0], [200.0, 0.0]])
    assert distance_bins(xy, (50, 90, 121, 200)).tolist() == [0, 0, 1, 1, 1, 3, 4]


def test_max_f1_threshold_per_bin() -> None:
    # near bin: 12 TPs at 0.50..0.94, 3 FPs at 0.6 / 0.3 / 0.2. Keeping >= 0.5: TP 12, FP 1 ->
    # F1 24/25; keeping >= 0.6 drops 2 TPs (0.5, 0.54) and keeps the FP: F1 20/23. So 0.5.
    tp = [0.5 + 0.04 * i for i in range(12)]
    gt_near, pred_near = _scene(tp, [0.6, 0.3, 0.2])
    # far bin (60 m): 11 TPs, all at 0.2..0.3, and 10 FPs at 0.9: the best F1 keeps everything.
    gt_far, pred_far = _scene([0.2 + 0.01 * i for i in range(11)], [0.9] * 10, x0=60.0)
    gts = {"s0": SampleBoxes.concatenate([gt_near, gt_far])}
    preds = {"s0": SampleBoxes.concatenate([pred_near, pred_far])}
    calibration = calibrate_thresholds(preds, gts, CLASSES)
    near, far, bin3, bin4 = calibration.cells[0]
    assert near.calibrated and near.threshold == pytest.approx(0.5) and near.f1 == pytest.approx(24 / 25)
    assert (near.num_gt, near.num_predictions) == (12, 15)
    assert near.precision == pytest.approx(12 / 13) and near.recall == pytest.approx(1.0)
    # the default 0.35 there drops nothing of the TPs and keeps the 0.6 FP: the same F1
    assert near.default_f1 == pytest.approx(24 / 25)
    assert far.calibrated and far.threshold == pytest.approx(0.2) and far.f1 == pytest.approx(22 / 32)
    assert far.default_f1 == 0.0  # 0.35 keeps only the ten FPs
    for cell in (bin3, bin4, *calibration.cells[1]):
        assert not cell.calibrated and cell.threshold == 0.35 and "too few to calibrate" in cell.note
    thresholds = calibration.thresholds
    assert thresholds.class_names == CLASSES
    assert thresholds.min_confidence_scores[0] == pytest.approx((0.5, 0.2, 0.35, 0.35))
    assert thresholds.min_confidence_scores[1] == (0.35,) * 4


def test_equal_f1_takes_the_lowest_threshold_and_target_precision() -> None:
    # TPs 0.9 x5, FPs at 0.8 (x5), TPs 0.7 x5: >= 0.9 gives F1 10/15 = 2/3; >= 0.7 gives 20/30 = 2/3.
    gt, pred = _scene([0.9] * 5 + [0.7] * 5, [0.8] * 5)
    calibration = calibrate_thresholds({"s": pred}, {"s": gt}, CLASSES, CalibrationSettings(min_gt=1, min_predictions=1))
    assert calibration.cells[0][0].threshold == pytest.approx(0.7)
    strict = CalibrationSettings(min_gt=1, min_predictions=1, target_precision=0.7)
    cell = calibrate_thresholds({"s": pred}, {"s": gt}, CLASSES, strict).cells[0][0]
    assert cell.threshold == pytest.approx(0.9) and cell.precision == 1.0  # 0.7 gives precision 2/3
    unreachable = CalibrationSettings(min_gt=1, min_predictions=1, target_precision=1.0)
    gt, pred = _scene([0.5] * 3, [0.9])
    cell = calibrate_thresholds({"s": pred}, {"s": gt}, CLASSES, unreachable).cells[0][0]
    assert not cell.calibrated and cell.threshold == 0.35 and "precision 1 never reached" in cell.note


def test_operating_point_is_exact() -> None:
    gt, pred = _scene([0.9, 0.5, 0.3], [0.95, 0.4])
    far_gt, far_pred = _scene([0.9], [], x0=250.0)  # beyond the last bin: dropped, not counted
    gts = {"s": SampleBoxes.concatenate([gt, far_gt]), "empty": SampleBoxes.empty()}
    preds = {"s": SampleBoxes.concatenate([pred, far_pred]), "empty": SampleBoxes.empty()}
    point = operating_point(preds, gts, ScoreThresholds(CLASSES))  # 0.35: keeps 0.95, 0.9, 0.5, 0.4
    assert (point.tp[0].tolist(), point.fp[0].tolist(), point.fn[0].tolist()) == ([2, 0, 0, 0], [2, 0, 0, 0],
                                                                                  [1, 0, 0, 0])
    assert point.f1("car") == pytest.approx(4 / 7) and point.f1("pedestrian") == 0.0
    assert point.f1() == pytest.approx(4 / 7) and point.macro_f1() == pytest.approx(2 / 7)
    exact = operating_point(preds, gts, ScoreThresholds(CLASSES, (50.0, 300.0), ((0.5, 0.99), (0.35, 0.35))))
    # the 250 m GT is counted in bin 1 now, and missed (its 0.9 prediction is below 0.99)
    assert (exact.tp[0].tolist(), exact.fp[0].tolist(), exact.fn[0].tolist()) == ([2, 0], [1, 0], [1, 1])
    assert exact.f1("car", 0) == pytest.approx(4 / 6) and exact.f1("car", 1) == 0.0


def test_bad_inputs() -> None:
    gt, pred = _scene([0.9], [])
    with pytest.raises(EvaluationError, match="same samples"):
        calibrate_thresholds({"a": pred}, {"b": gt}, CLASSES)
    with pytest.raises(EvaluationError, match=r"classes \['car'\] that are not the model's"):
        calibrate_thresholds({"a": pred}, {"a": gt}, ("bus",))
    with pytest.raises(EvaluationError, match="strictly ascending"):
        CalibrationSettings(distance_bin_upper_limits=(90.0, 50.0))
    with pytest.raises(EvaluationError, match="target precision"):
        CalibrationSettings(target_precision=0.0)


def test_calibrate_thresholds_command(tmp_path: Path) -> None:
    tp = [0.5 + 0.04 * i for i in range(12)]
    gt, pred = _scene(tp, [0.6, 0.3, 0.2])
    save_boxes(tmp_path / "gt.json", {"s0": gt}, "ground_truth", meta={"class_names": list(CLASSES)})
    save_boxes(tmp_path / "p.json", {"s0": pred}, "predictions", meta={"class_names": list(CLASSES)})
    held_gt, held_pred = _scene([0.45] + tp[1:], [0.4, 0.3])  # held out: 0.35 keeps both FPs
    save_boxes(tmp_path / "hgt.json", {"h0": held_gt}, "ground_truth")
    save_boxes(tmp_path / "hp.json", {"h0": held_pred}, "predictions")
    out = tmp_path / "out"
    args = ["calibrate-thresholds", "-p", str(tmp_path / "p.json"), "-g", str(tmp_path / "gt.json"), "-o", str(out)]
    result = runner.invoke(app, [*args, "--holdout-predictions", str(tmp_path / "hp.json"),
                                 "--holdout-ground-truth", str(tmp_path / "hgt.json")])
    assert result.exit_code == 0, result.output
    params = yaml.safe_load((out / "score_thresholds.param.yaml").read_text())
    block = params["/**"]["ros__parameters"]["detection_score_thresholds"]
    assert block["distance_bin_upper_limits"] == [50.0, 90.0, 121.0, 200.0]
    assert block["min_confidence_scores"]["CAR"] == pytest.approx([0.5, 0.35, 0.35, 0.35])
    assert block["min_confidence_scores"]["PEDESTRIAN"] == [0.35] * 4
    report = json.loads((out / "calibration.json").read_text())
    held = report["comparisons"][1]
    assert held["label"] == "held-out frames"
    # held out at 0.5: TP 11 (0.45 dropped), FP 0 -> 22/23; at 0.35: TP 12, FP 1 (0.4) -> 24/25
    assert held["classes"]["car"]["f1_calibrated"] == pytest.approx(22 / 23)
    assert held["classes"]["car"]["f1_default"] == pytest.approx(24 / 25)
    assert (held["cell_f1_default"], held["cell_f1_calibrated"]) == pytest.approx((24 / 25, 22 / 23))
    car_near = next(c for c in report["cells"] if c["class_name"] == "car" and c["bin_name"] == "0-50m")
    assert car_near["curve"]["thresholds"][0] == pytest.approx(0.94) and len(car_near["curve"]["f1"]) == 15
    markdown = (out / "calibration.md").read_text()
    assert "| car | 0-50m | 12 | 15 | 0.5000 |" in markdown and "too few to calibrate" in markdown
    assert "held-out frames (1 samples): baseline (0.35) vs calibrated" in markdown
    assert (out / "calibration_pr.png").stat().st_size > 10_000
    assert "car: 0-50m 0.500, 50-90m 0.350" in result.stderr

    result = runner.invoke(app, [*args, "--bins", "50,x"])
    assert isinstance(result.exception, EvaluationError) and "--bins must be comma-separated" in str(result.exception)
    result = runner.invoke(app, [*args, "--holdout-predictions", str(tmp_path / "hp.json")])
    assert isinstance(result.exception, EvaluationError) and "give both" in str(result.exception)
