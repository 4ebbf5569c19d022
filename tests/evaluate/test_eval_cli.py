"""``centerpoint-deploy evaluate`` and ``centerpoint-deploy score``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from centerpoint_deploy.cli.app import app
from centerpoint_deploy.data.synthetic import LidarConfig, WorldConfig, generate_dataset
from centerpoint_deploy.errors import BackendError, EvaluationError
from centerpoint_deploy.evaluate.io import save_boxes

runner = CliRunner()


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    return generate_dataset(root, 1, 3, 0, LidarConfig(beams=16, columns=360, max_range=40.0), WorldConfig())[0]


def test_evaluate_random_weights_writes_reports(scene: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    args = ["evaluate", "--dataset", str(scene), "--config", "tiny", "--random-weights", "--max-frames", "2",
            "--render", "1", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "mAP" in result.stdout
    predictions = json.loads((out / "pytorch" / "predictions.json").read_text())
    assert len(predictions["results"]) == 2
    assert (out / "pytorch" / "metrics.md").is_file() and (out / "comparison.md").is_file()
    assert len(list((out / "bev").glob("*.png"))) == 1
    again = runner.invoke(app, args + ["--metric", "nuscenes", "--no-plots"])
    assert again.exit_code == 0, again.output
    assert "reusing cached predictions" in again.output
    assert "traffic_cone" in (out / "pytorch" / "metrics.md").read_text()


@pytest.mark.parametrize("extra, message", [
    (["--backend", "onnxruntime"], "--deploy-dir"),
    (["--backend", "pytorch"], "no weights: pass --checkpoint PATH (or --random-weights"),
    (["--backend", "pytorch", "--backend", "pytorch", "--random-weights"], "distinct"),
])
def test_evaluate_argument_errors(scene: Path, tmp_path: Path, extra: list[str], message: str) -> None:
    result = runner.invoke(app, ["evaluate", "--dataset", str(scene), "-c", "tiny", "--out", str(tmp_path), *extra])
    assert isinstance(result.exception, BackendError)
    assert message in str(result.exception)


def test_score_files(tmp_path: Path, make_boxes) -> None:
    gt = {"s0": make_boxes([[1.0, 1.0], [20.0, -3.0]], ["car", "pedestrian"], attributes=["vehicle.moving", ""]),
          "s1": make_boxes([[70.0, 0.0]], ["car"], attributes=["vehicle.parked"])}
    preds = {"s0": make_boxes([[1.0, 1.0], [20.0, -3.0]], ["car", "pedestrian"], scores=[0.9, 0.8],
                              attributes=["vehicle.moving", ""]),
             "s1": make_boxes([[70.0, 0.0]], ["car"], scores=[0.7], attributes=["vehicle.parked"])}
    save_boxes(tmp_path / "gt.json", gt, "ground_truth", meta={"class_names": ["car", "pedestrian"]})
    save_boxes(tmp_path / "preds.json", preds, "predictions")
    result = runner.invoke(app, ["score", "-p", str(tmp_path / "preds.json"), "-g", str(tmp_path / "gt.json"),
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["mean_ap"] == pytest.approx(1.0, abs=1e-12)
    assert list(metrics["config"]["class_range"]) == ["car", "pedestrian"]
    assert metrics["distance_buckets"]["50-90m"]["num_gt"] == {"car": 1, "pedestrian": 0}
    assert (tmp_path / "out" / "pr_curves.png").is_file()
    # nuScenes ranges drop the car at 70 m: 1 of 2 cars evaluated and found.
    result = runner.invoke(app, ["score", "-p", str(tmp_path / "preds.json"), "-g", str(tmp_path / "gt.json"),
                                 "--metric", "nuscenes", "--no-plots", "--out", str(tmp_path / "nus")])
    assert result.exit_code == 0, result.output
    nus = json.loads((tmp_path / "nus" / "metrics.json").read_text())
    assert nus["num_gt"]["car"] == 1 and nus["mean_dist_aps"]["car"] == pytest.approx(1.0)
    assert np.isclose(nus["mean_ap"], 2 / 10)


def test_score_reports_bad_files(tmp_path: Path) -> None:
    (tmp_path / "gt.json").write_text(json.dumps({"meta": {"size_order": "lwh"}, "results": {"s0": []}}))
    (tmp_path / "p.json").write_text(json.dumps({"meta": {}, "results": {"s0": []}}))
    result = runner.invoke(app, ["score", "-p", str(tmp_path / "p.json"), "-g", str(tmp_path / "gt.json"),
                                 "--out", str(tmp_path / "out")])
    assert isinstance(result.exception, EvaluationError)
    assert "size_order" in str(result.exception)
