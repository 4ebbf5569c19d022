"""Calibrated thresholds into a bundle, and bundles' node parameters in the detectors built on them."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from centerpoint_deploy.cli.app import app
from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.errors import BundleError, ConfigError, EvaluationError
from centerpoint_deploy.evaluate.calibrate import CalibrationSettings
from centerpoint_deploy.evaluate.calibrate_bundle import calibrate_bundle, split_samples
from centerpoint_deploy.evaluate.io import save_boxes
from centerpoint_deploy.export.bundle import read_node_params, write_thresholds
from centerpoint_deploy.export.manifest import load_manifest
from centerpoint_deploy.config import load_config
from centerpoint_deploy.export.onnx_export import export_onnx
from centerpoint_deploy.model import build_model
from centerpoint_deploy.postprocess.autoware import AutowarePostprocess
from centerpoint_deploy.postprocess.modes import CALIBRATION_VIEW, calibration_view, default_views
from centerpoint_deploy.postprocess.node_params import ScoreThresholds
from centerpoint_deploy.variant import VariantSpec, build_detector

from .test_eval_calibrate import _scene

runner = CliRunner()
SETTINGS = CalibrationSettings(min_gt=5, min_predictions=5)


#: Eight TPs at 0.6..0.88 and FPs at 0.5, 0.45, 0.4: the best car threshold in the near bin is 0.6.
TP = [0.6 + 0.04 * i for i in range(8)]
FP = [0.5, 0.45, 0.4]


@pytest.fixture(scope="module")
def tiny_config() -> ModelConfig:
    return load_config("tiny")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, tiny_config: ModelConfig) -> Path:
    """A v4.1 bundle of the tiny model with random weights."""
    out = tmp_path_factory.mktemp("bundle")
    export_onnx(build_model(tiny_config), tiny_config, out)
    return out


@pytest.fixture()
def bundle(exported: Path, tmp_path: Path) -> Path:
    """A copy of the tiny v4.1 bundle whose car thresholds are 0.3 (not the default) in every bin."""
    out = Path(shutil.copytree(exported, tmp_path / "bundle"))
    current = read_node_params(out).thresholds
    rows = tuple((0.3,) * len(current.distance_bin_upper_limits) if n == "car" else row
                 for n, row in zip(current.class_names, current.min_confidence_scores))
    write_thresholds(out, dataclasses.replace(current, min_confidence_scores=rows))
    return out


def _car_row(bundle: Path) -> tuple[float, ...]:
    return read_node_params(bundle).thresholds.for_class("car")


def test_calibrated_thresholds_are_written_where_held_out_frames_gain(bundle: Path, tiny_config: ModelConfig,
                                                                       tmp_path: Path) -> None:
    gt, pred = _scene(TP, FP)
    outcome = calibrate_bundle({"a": pred}, {"a": gt}, tiny_config.class_names, bundle, tmp_path / "cal", SETTINGS,
                               holdout=({"b": pred}, {"b": gt}), plots=False)
    assert outcome.written and outcome.reason == ""
    row = _car_row(bundle)
    assert row[0] == pytest.approx(0.6) and row[1:] == (0.3,) * (len(row) - 1)  # other bins keep the bundle's 0.3
    others = read_node_params(bundle).thresholds
    assert all(r == (0.35,) * len(r) for n, r in zip(others.class_names, others.min_confidence_scores) if n != "car")
    manifest = load_manifest(bundle)  # re-hashed: still opens
    check = manifest.checks["calibration"]
    assert check.passed and check.figures["cell_f1_calibrated"] > check.figures["cell_f1_baseline"]
    assert outcome.calibration.baseline_label == "current"
    assert outcome.calibration.cells[0][0].baseline == 0.3


def test_thresholds_that_lose_on_held_out_frames_are_not_written(bundle: Path, tiny_config: ModelConfig,
                                                                  tmp_path: Path) -> None:
    gt, pred = _scene(TP, FP)
    held_gt, held_pred = _scene([0.35, 0.4, 0.45] + TP[3:], [])  # held out: the low-scored TPs matter
    before = (bundle / "ml_package.param.yaml").read_bytes()
    outcome = calibrate_bundle({"a": pred}, {"a": gt}, tiny_config.class_names, bundle, tmp_path / "cal", SETTINGS,
                               holdout=({"b": held_pred}, {"b": held_gt}), plots=False)
    assert not outcome.written and "lose F1 on the held-out frames" in outcome.reason
    assert (bundle / "ml_package.param.yaml").read_bytes() == before
    assert not load_manifest(bundle).checks["calibration"].passed


def test_calibrate_command_with_a_bundle(bundle: Path, tiny_config: ModelConfig, tmp_path: Path) -> None:
    gt, pred = _scene(TP, FP)
    names = {"class_names": list(tiny_config.class_names)}
    save_boxes(tmp_path / "gt.json", {"a": gt, "b": gt}, "ground_truth", meta=names)
    save_boxes(tmp_path / "p.json", {"a": pred, "b": pred}, "predictions", meta={**names, "view": CALIBRATION_VIEW})
    args = ["calibrate-thresholds", "-p", str(tmp_path / "p.json"), "-g", str(tmp_path / "gt.json"),
            "--bundle", str(bundle), "--min-gt", "5", "--min-predictions", "5", "--no-plots"]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "out"), "--holdout-fraction", "0.5"])
    assert result.exit_code == 0, result.output
    assert "wrote the calibrated thresholds into" in result.stderr and "warning" not in result.stderr
    assert _car_row(bundle)[0] == pytest.approx(0.6)
    bins = read_node_params(bundle).thresholds.distance_bin_upper_limits
    assert yaml.safe_load((tmp_path / "out" / "score_thresholds.param.yaml").read_text())[
        "/**"]["ros__parameters"]["detection_score_thresholds"]["distance_bin_upper_limits"] == list(bins)

    result = runner.invoke(app, [*args, "-o", str(tmp_path / "o2"), "--bins", "10,20"])
    assert isinstance(result.exception, EvaluationError) and "differ from the bundle's" in str(result.exception)
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "o3"), "--holdout-fraction", "1.5"])
    assert isinstance(result.exception, EvaluationError) and "--holdout-fraction" in str(result.exception)
    (bundle / "ml_package.param.yaml").write_text((bundle / "ml_package.param.yaml").read_text() + "\n# edited\n")
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "o4")])
    assert isinstance(result.exception, BundleError) and "ml_package.param.yaml" in str(result.exception)


def test_split_samples_holds_out_the_last_frames() -> None:
    samples = {f"t{i}": None for i in range(5)}
    assert split_samples(samples, 0.4) == (["t0", "t1", "t2"], ["t3", "t4"])
    assert split_samples(samples, 0.0) == ([f"t{i}" for i in range(5)], [])
    assert split_samples({"a": None, "b": None}, 0.01) == (["a"], ["b"])  # one each side
    with pytest.raises(EvaluationError, match="holdout fraction"):
        split_samples(samples, 1.0)


def test_detectors_on_a_bundle_carry_its_node_parameters(bundle: Path, tiny_config: ModelConfig) -> None:
    detector = build_detector(VariantSpec.parse("onnxruntime", device="cpu"), tiny_config, deploy_dir=bundle)
    assert detector.node_params == read_node_params(bundle)
    assert detector.postprocess is None  # the config's postprocess is mmdet3d's
    autoware = default_views(tiny_config, params=detector.node_params)[1].postprocess
    assert isinstance(autoware, AutowarePostprocess) and autoware.params.thresholds.for_class("car")[0] == 0.3
    assert build_detector(VariantSpec.parse("pytorch", device="cpu"), tiny_config).node_params is None

    node_config = dataclasses.replace(tiny_config, postprocess="autoware")
    node = build_detector(VariantSpec.parse("onnxruntime", device="cpu"), node_config, deploy_dir=bundle)
    assert isinstance(node.postprocess, AutowarePostprocess) and node.postprocess.params == read_node_params(bundle)
    with pytest.raises(ConfigError, match="fixed-shape pipeline runs mmdet3d's decode"):
        build_detector(VariantSpec.parse("onnxruntime:fp32+static", device="cpu"), node_config, deploy_dir=bundle)


def test_calibration_view_lowers_every_threshold_only(tiny_config: ModelConfig, bundle: Path) -> None:
    params = read_node_params(bundle)
    view = calibration_view(tiny_config, params, 0.1)
    assert view.name == CALIBRATION_VIEW and view.mode == "autoware"
    assert view.postprocess.params == params.with_thresholds_at(0.1)
    assert {v for row in view.postprocess.params.thresholds.min_confidence_scores for v in row} == {0.1}
    assert view.postprocess.params.yaw_norm_thresholds == params.yaw_norm_thresholds
    assert [v.name for v in default_views(tiny_config, calibration_floor=0.1)] == ["mmdet3d", "autoware",
                                                                                   CALIBRATION_VIEW]
    with pytest.raises(ConfigError, match="calibration floor"):
        calibration_view(tiny_config, params, 1.0)


def test_scores_thresholds_at() -> None:
    thresholds = ScoreThresholds(("car", "bus"), (50.0, 90.0)).at(0.2)
    assert thresholds.min_confidence_scores == ((0.2, 0.2), (0.2, 0.2))
