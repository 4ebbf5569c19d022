"""``centerpoint-deploy evaluate`` and ``centerpoint-deploy score``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import centerpoint_deploy
from centerpoint_deploy.cli.app import app
from centerpoint_deploy.data import open_dataset
from centerpoint_deploy.data.synthetic import LidarConfig, WorldConfig, generate_dataset
from centerpoint_deploy.errors import BackendError, EvaluationError
from centerpoint_deploy.evaluate.data_classes import SampleBoxes, t4_metric_config
from centerpoint_deploy.evaluate.io import load_boxes, save_boxes
from centerpoint_deploy.evaluate.metrics import evaluate_boxes

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
    # nuScenes ranges for the model's five classes only (the other five would each add an AP of 0),
    # each lowered to the tiny grid's reach (+-12.8 m -> 10 m), as deploy does
    scored = json.loads((out / "pytorch" / "metrics.json").read_text())["config"]["class_range"]
    assert scored == dict.fromkeys(["car", "truck", "bus", "bicycle", "pedestrian"], 10.0)
    assert "class range 10 m (the model's grid reaches 12.8 m)" in again.output
    ranged = runner.invoke(app, args + ["--class-range", "7.5", "--no-plots"])
    assert ranged.exit_code == 0, ranged.output
    assert set(json.loads((out / "pytorch" / "metrics.json").read_text())["config"]["class_range"].values()) == {7.5}


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
    assert list(nus["config"]["class_range"]) == ["car", "pedestrian"]  # not the devkit's ten
    assert np.isclose(nus["mean_ap"], 1.0)
    assert "scored 2 classes (mAP is their mean): car (2 GT, 2 predicted), pedestrian (1 GT, 1 predicted)" \
        in result.stderr


def test_score_names_classes_never_predicted_and_refuses_absent_ones(tmp_path: Path, make_boxes) -> None:
    gt = {"s0": make_boxes([[1.0, 1.0], [5.0, 0.0]], ["car", "bus"])}
    save_boxes(tmp_path / "gt.json", gt, "ground_truth", meta={"class_names": ["car", "bus", "bicycle"]})
    save_boxes(tmp_path / "p.json", {"s0": make_boxes([[1.0, 1.0]], ["car"], scores=[0.9])}, "predictions")
    args = ["score", "-p", str(tmp_path / "p.json"), "-g", str(tmp_path / "gt.json"), "--no-plots",
            "--out", str(tmp_path / "out")]
    result = runner.invoke(app, args + ["--metric", "nuscenes"])
    assert isinstance(result.exception, EvaluationError)
    assert "classes ['bicycle'] of the metric are in neither the predictions nor the ground truth" \
        in str(result.exception)
    (tmp_path / "m.json").write_text(json.dumps({"class_range": {"car": 50, "bus": 50}}))
    result = runner.invoke(app, args + ["--metric", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    assert "the predictions never contain ['bus']: their AP is 0" in result.stderr
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["mean_ap"] == pytest.approx(0.5)


def test_score_reports_bad_files(tmp_path: Path) -> None:
    (tmp_path / "gt.json").write_text(json.dumps({"meta": {"size_order": "lwh"}, "results": {"s0": []}}))
    (tmp_path / "p.json").write_text(json.dumps({"meta": {}, "results": {"s0": []}}))
    result = runner.invoke(app, ["score", "-p", str(tmp_path / "p.json"), "-g", str(tmp_path / "gt.json"),
                                 "--out", str(tmp_path / "out")])
    assert isinstance(result.exception, EvaluationError)
    assert "size_order" in str(result.exception)


def test_evaluate_render_keeps_a_hostile_sample_token_inside_out(scene: Path, tmp_path: Path) -> None:
    """A sample token that is a path (``x/../../../PWNED``) names a BEV file inside ``--out/bev``."""
    hostile = "x/../../../PWNED"
    copy = tmp_path / "data" / scene.name
    shutil.copytree(scene, copy)
    token = json.loads((copy / "annotation" / "sample.json").read_text())[0]["token"]
    for table in (copy / "annotation").glob("*.json"):
        table.write_text(table.read_text().replace(token, hostile))
    out = tmp_path / "a" / "b" / "out"
    result = runner.invoke(app, ["evaluate", "--dataset", str(copy), "--config", "tiny", "--random-weights",
                                 "--max-frames", "1", "--render", "1", "--no-plots", "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = [p for p in tmp_path.rglob("*.png")]
    assert len(written) == 1 and written[0].parent == out / "bev", written
    assert written[0].name == "00000_x_.._.._.._PWNED.png"


def test_detect_output_feeds_score(scene: Path, tmp_path: Path) -> None:
    """``detect`` writes the prediction box file ``score`` reads: one sample per point file, boxes intact."""
    data = yaml.safe_load((Path(centerpoint_deploy.__file__).parent / "config/presets/tiny.yaml").read_text())
    data["head"]["init_bias"] = 0.0  # a random model that emits boxes
    config = tmp_path / "busy.yaml"
    config.write_text(yaml.safe_dump(data))
    frames = open_dataset(str(scene), class_names=data["class_names"])
    files = [str(frames.records[i].lidar_path) for i in range(2)]
    gts = {}
    for i, key in enumerate(files):
        gt = frames.records[i].gt
        gts[key] = SampleBoxes.from_ground_truth(gt.boxes, gt.labels, gt.class_names, gt.num_lidar_pts, gt.attributes)
    save_boxes(tmp_path / "gt.json", gts, "ground_truth", meta={"class_names": data["class_names"]})

    common = ["detect", *files, "-c", str(config), "--random-weights"]
    result = runner.invoke(app, [*common, "-o", str(tmp_path / "preds.json")])
    assert result.exit_code == 0, result.output
    records = json.loads(runner.invoke(app, [*common, "--format", "records"]).stdout)
    preds, meta = load_boxes(tmp_path / "preds.json", "predictions")
    assert list(preds) == files and meta["backend"] == "pytorch" and meta["class_names"] == data["class_names"]
    for key in files:
        assert len(preds[key]) == len(records[key]) > 0
        np.testing.assert_array_equal(preds[key].boxes, np.array([r["box"] for r in records[key]]))
        assert preds[key].names.tolist() == [r["label"] for r in records[key]]
        assert preds[key].scores.tolist() == [r["score"] for r in records[key]]

    result = runner.invoke(app, ["score", "-p", str(tmp_path / "preds.json"), "-g", str(tmp_path / "gt.json"),
                                 "--no-plots", "--out", str(tmp_path / "scored")])
    assert result.exit_code == 0, result.output
    scored = json.loads((tmp_path / "scored" / "metrics.json").read_text())
    expected = evaluate_boxes(preds, gts, t4_metric_config(data["class_names"]))
    assert scored["mean_ap"] == expected.mean_ap and scored["num_pred"] == expected.num_pred
    assert sum(expected.num_pred.values()) > 0


def test_detect_refuses_an_unknown_format_before_running(tmp_path: Path) -> None:
    result = runner.invoke(app, ["detect", str(tmp_path / "missing.bin"), "-c", "tiny", "--random-weights",
                                 "--format", "kitti"])
    assert isinstance(result.exception, EvaluationError)
    assert "--format must be one of ['predictions', 'records'], got 'kitti'" in str(result.exception)
