"""Box files, metric configs and metric results through JSON, and the errors of bad files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from centerpoint_deploy.errors import EvaluationError
from centerpoint_deploy.evaluate.data_classes import MetricConfig, SampleBoxes, t4_metric_config
from centerpoint_deploy.evaluate.io import load_boxes, load_metric_config, load_metrics, save_boxes, save_metrics
from centerpoint_deploy.evaluate.metrics import evaluate_boxes
from centerpoint_deploy.structures import Detections


def _write(path: Path, content: object) -> Path:
    path.write_text(json.dumps(content))
    return path


def _record(**overrides: object) -> dict:
    record = {"translation": [1.0, 2.0, 0.5], "size": [4.0, 2.0, 1.5], "yaw": 0.25, "velocity": [1.0, 0.0],
              "detection_name": "car", "detection_score": 0.75, "attribute_name": "vehicle.moving"}
    record.update(overrides)
    return record


def test_predictions_round_trip(tmp_path, make_boxes):
    samples = {
        "t0": make_boxes([[1, 2, 0.5, 4, 2, 1.5, 0.25, 1, 0], [3, 4, 0, 1, 0.6, 1.7, -1, 0, 0]], ["car", "pedestrian"],
                         scores=[0.5, 0.25], attributes=["vehicle.moving", ""]),
        "t1": SampleBoxes.empty(),
    }
    save_boxes(tmp_path / "p.json", samples, "predictions", meta={"backend": "pytorch"})
    loaded, meta = load_boxes(tmp_path / "p.json", "predictions")
    assert list(loaded) == ["t0", "t1"] and len(loaded["t1"]) == 0
    assert meta["backend"] == "pytorch" and meta["size_order"] == "lwh" and meta["kind"] == "predictions"
    for field in ("boxes", "names", "scores", "attributes", "num_pts"):
        np.testing.assert_array_equal(getattr(loaded["t0"], field), getattr(samples["t0"], field))


def test_ground_truth_round_trip_keeps_nan_velocity_and_points(tmp_path, make_boxes):
    gt = make_boxes([[1, 2, 0.5, 4, 2, 1.5, 0.25, float("nan"), float("nan")]], ["car"], num_pts=[0])
    save_boxes(tmp_path / "g.json", {"t0": gt}, "ground_truth")
    raw = json.loads((tmp_path / "g.json").read_text())
    assert raw["results"]["t0"][0]["velocity"] == [None, None]
    assert raw["results"]["t0"][0]["num_lidar_pts"] == 0
    loaded, _ = load_boxes(tmp_path / "g.json", "ground_truth")
    assert np.isnan(loaded["t0"].boxes[0, 7:]).all()
    assert loaded["t0"].num_pts.tolist() == [0] and loaded["t0"].scores.tolist() == [-1.0]


def test_nuscenes_style_wlh_and_quaternion(tmp_path):
    yaw = 0.7
    quat = [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]
    record = _record(size=[2.0, 4.0, 1.5], rotation=quat)
    del record["yaw"]
    path = _write(tmp_path / "n.json", {"meta": {"size_order": "wlh"}, "results": {"s": [record]}})
    boxes, _ = load_boxes(path, "predictions")
    assert boxes["s"].boxes[0, 3:7] == pytest.approx([4.0, 2.0, 1.5, yaw], abs=1e-12)


def test_detections_and_metrics_survive_json(tmp_path):
    det = Detections(torch.tensor([[0.0, 0, 0, 4, 2, 1.5, 0.1, 0, 0]]), torch.tensor([0.5]), torch.tensor([1]))
    pred = SampleBoxes.from_detections(det, ("car", "truck"))
    gt = SampleBoxes.from_ground_truth(np.array([[0.0, 0, 0, 4, 2, 1.5, 0.1, 0, 0]]), np.array([1]), ("car", "truck"),
                                       np.array([3]), ["vehicle.parked"])
    assert pred.names.tolist() == ["truck"] and gt.names.tolist() == ["truck"]
    config = t4_metric_config(["car", "truck"])
    metrics = evaluate_boxes({"s": pred}, {"s": gt}, config)
    save_metrics(tmp_path / "m.json", metrics)
    back = load_metrics(tmp_path / "m.json")
    assert back.config == config
    assert back.summary() == metrics.summary()
    assert back.label_aps == metrics.label_aps
    np.testing.assert_array_equal(back.curves["truck"][2.0].precision, metrics.curves["truck"][2.0].precision)
    assert metrics.label_tp_errors["truck"]["attr_err"] == 0.0   # a still truck is predicted "vehicle.parked", like the GT


def test_metric_config_round_trip_and_specs(tmp_path):
    config = MetricConfig(class_range={"car": 40.0, "barrier": 20.0}, dist_ths=(1.0, 2.0), dist_th_tp=1.0,
                          ego_origin=(0.5, 0.0), distance_buckets=((0.0, 20.0),))
    assert MetricConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    path = _write(tmp_path / "metric.json", config.to_dict())
    assert load_metric_config(path, ["car"]) == config
    assert load_metric_config("t4", ["car", "bus"]).class_range == {"car": 121.0, "bus": 121.0}
    assert load_metric_config("nuscenes", ["car", "traffic_cone"]).class_range == {"car": 50.0, "traffic_cone": 30.0}
    with pytest.raises(EvaluationError, match="t4"):
        load_metric_config("kitti", ["car"])


@pytest.mark.parametrize("kwargs, message", [
    ({"class_range": {}}, "non-empty"),
    ({"class_range": {"car": -1.0}}, r"class_range\['car'\]"),
    ({"class_range": {"car": 50.0}, "dist_th_tp": 3.0}, "dist_th_tp"),
    ({"class_range": {"car": 50.0}, "min_precision": 1.0}, "min_precision"),
    ({"class_range": {"car": 50.0}, "max_boxes_per_sample": 0}, "max_boxes_per_sample"),
    ({"class_range": {"car": 50.0}, "distance_buckets": ((50.0, 10.0),)}, "distance_buckets"),
])
def test_metric_config_rejects_bad_values(kwargs, message):
    with pytest.raises(EvaluationError, match=message):
        MetricConfig(**kwargs)


def test_metric_config_rejects_unknown_keys():
    with pytest.raises(EvaluationError, match="unknown keys"):
        MetricConfig.from_dict({"class_range": {"car": 1.0}, "dist_fcn": "center_distance"})


@pytest.mark.parametrize("content, message", [
    ([1, 2], "expected an object with 'meta' and 'results'"),
    ({"meta": {}, "results": {}}, "meta.size_order"),
    ({"meta": {"size_order": "lwh", "kind": "ground_truth"}, "results": {}}, "meta.kind"),
    ({"meta": {"size_order": "lwh"}, "results": {"s1": {}}}, r"results\['s1'\]: expected a list"),
    ({"meta": {"size_order": "lwh"}, "results": {"s1": [_record(size=[4.0, 2.0])]}},
     r"results\['s1'\]\[0\]\.size: expected a list of 3 numbers"),
    ({"meta": {"size_order": "lwh"}, "results": {"s1": [_record(), _record(detection_score="high")]}},
     r"results\['s1'\]\[1\]\.detection_score: expected a number"),
    ({"meta": {"size_order": "lwh"}, "results": {"s1": [_record(detection_name=3)]}},
     r"\[0\]\.detection_name: expected a string"),
    ({"meta": {"size_order": "lwh"}, "results": {"s1": [{"translation": [0, 0, 0]}]}}, r"\[0\]: missing fields"),
    ({"meta": {"size_order": "lwh"}, "results": {"s1": [_record(size=[4.0, 0.0, 1.0])]}}, r"results\['s1'\]: box sizes"),
])
def test_bad_prediction_files_name_sample_and_field(tmp_path, content, message):
    path = _write(tmp_path / "bad.json", content)
    with pytest.raises(EvaluationError, match=message):
        load_boxes(path, "predictions")


def test_unreadable_files(tmp_path):
    with pytest.raises(EvaluationError, match="does not exist"):
        load_boxes(tmp_path / "missing.json", "predictions")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(EvaluationError, match="not valid JSON"):
        load_boxes(tmp_path / "broken.json", "ground_truth")
    with pytest.raises(EvaluationError, match="kind"):
        load_boxes(tmp_path / "broken.json", "labels")


def test_bad_ground_truth_points(tmp_path):
    record = _record(num_lidar_pts=2.5)
    path = _write(tmp_path / "g.json", {"meta": {"size_order": "lwh"}, "results": {"s": [record]}})
    with pytest.raises(EvaluationError, match=r"\[0\]\.num_lidar_pts"):
        load_boxes(path, "ground_truth")


def _box_file(tmp_path: Path, results_text: str, kind: str = "predictions") -> Path:
    path = tmp_path / f"{kind}.json"
    path.write_text('{"meta": {"size_order": "lwh", "kind": "%s"}, "results": %s}' % (kind, results_text))
    return path


def test_duplicate_sample_tokens_are_refused(tmp_path):
    box = json.dumps(_record())
    path = _box_file(tmp_path, '{"s0": [%s], "s1": [], "s0": []}' % box)
    with pytest.raises(EvaluationError, match="key 's0' appears twice in one JSON object"):
        load_boxes(path, "predictions")
    # A field given twice inside a box is the same ambiguity.
    path = _box_file(tmp_path, '{"s0": [%s]}' % box.replace('"yaw": 0.25', '"yaw": 0.25, "yaw": 1.0'))
    with pytest.raises(EvaluationError, match="key 'yaw' appears twice"):
        load_boxes(path, "predictions")


@pytest.mark.parametrize("quat", [[0.0, 0.0, 0.0, 0.0], [1e-9, 0.0, 0.0, 0.0],
                                  [math.sqrt(0.5), 0.0, -math.sqrt(0.5), 0.0]])  # pitch 90 deg: x axis vertical
def test_degenerate_rotations_are_refused(tmp_path, quat):
    good = _record(rotation=[1.0, 0.0, 0.0, 0.0])
    bad = _record(rotation=quat)
    for record in (good, bad):
        record.pop("yaw")
    path = _write(tmp_path / "p.json", {"meta": {"size_order": "lwh"}, "results": {"s0": [good, _record(), bad]}})
    with pytest.raises(EvaluationError, match=r"results\['s0'\]\[2\]\.rotation: .* is a degenerate rotation"):
        load_boxes(path, "predictions")


def test_non_unit_quaternion_gives_the_heading_of_its_rotation(tmp_path):
    yaw = -2.0
    record = _record(rotation=[3 * math.cos(yaw / 2), 0.0, 0.0, 3 * math.sin(yaw / 2)])
    record.pop("yaw")
    path = _write(tmp_path / "p.json", {"meta": {"size_order": "lwh"}, "results": {"s0": [record]}})
    assert load_boxes(path, "predictions")[0]["s0"].boxes[0, 6] == pytest.approx(yaw)


@pytest.mark.parametrize("depth", [100_000, 2_000_000])
def test_deeply_nested_json_is_one_error(tmp_path, depth):
    path = _box_file(tmp_path, '{"s0": [%s%s]}' % ("[" * depth, "]" * depth))
    with pytest.raises(EvaluationError, match="nested too deeply"):
        load_boxes(path, "predictions")


def test_a_number_of_too_many_digits_is_one_error(tmp_path):
    path = _box_file(tmp_path, '{"s0": [%s]}' % json.dumps(_record()).replace("0.75", "7" * 5000))
    with pytest.raises(EvaluationError, match="is not valid JSON"):
        load_boxes(path, "predictions")


def test_nuscenes_preset_scores_only_the_model_classes():
    assert list(load_metric_config("nuscenes", ["car", "pedestrian"]).class_range) == ["car", "pedestrian"]
    with pytest.raises(EvaluationError, match=r"classes \['forklift'\] are not among them"):
        load_metric_config("nuscenes", ["car", "forklift"])
