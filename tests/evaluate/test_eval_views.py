"""evaluate reports both post-processing views, from one network run per frame."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from centerpoint_deploy.evaluate.data_classes import t4_metric_config
from centerpoint_deploy.evaluate.io import load_boxes
from centerpoint_deploy.evaluate.runner import evaluate_backends
from centerpoint_deploy.postprocess.autoware import AutowarePostprocess
from centerpoint_deploy.postprocess.modes import default_views
from centerpoint_deploy.postprocess.node_params import NodePostprocessParams, ScoreThresholds

from .test_eval_runner import CLASSES, _tiny_detector, config, dataset  # noqa: F401  (fixtures)


def low_threshold_params() -> NodePostprocessParams:
    """The random tiny model scores 0.0100-0.0106: this threshold leaves the node a few hundred boxes per frame."""
    return NodePostprocessParams(ScoreThresholds(CLASSES, (50.0, 90.0, 121.0, 200.0),
                                                 tuple((0.0103,) * 4 for _ in CLASSES)), (0.0,) * 5)


def test_both_views_from_one_network_run(tmp_path: Path, dataset, config, monkeypatch) -> None:  # noqa: F811
    detector = _tiny_detector(config)
    calls = {"head": 0}
    infer = detector.head.infer

    def counted(inputs):
        calls["head"] += 1
        return infer(inputs)

    monkeypatch.setattr(detector.head, "infer", counted)
    params = low_threshold_params()
    out = tmp_path / "eval"
    results = evaluate_backends(dataset, {"pytorch": detector}, out, t4_metric_config(CLASSES), plots=False,
                                views={"pytorch": default_views(config, params=params)})
    assert calls["head"] == len(dataset)  # one head run per frame for both views
    assert set(results) == {"pytorch", "pytorch@autoware"}
    for entry in results:
        assert (out / entry / "metrics.json").is_file() and (out / entry / "predictions.json").is_file()

    # the autoware entry is exactly the node's post-processing of the same head outputs
    node = AutowarePostprocess(config, params)
    predictions, meta = load_boxes(out / "pytorch@autoware" / "predictions.json", "predictions")
    assert meta["postprocess"] == "autoware"
    frame = dataset[0]
    points = torch.from_numpy(np.ascontiguousarray(frame.points[:, list(config.points.use_dim)], dtype=np.float32))
    expected = node(detector.task_maps(detector.run_stages(points).head_outputs))[0]
    assert len(expected) > 0
    assert np.allclose(predictions[frame.token].scores, expected.scores.numpy())
    calls["head"] = len(dataset)  # not counting that check's own run

    table = json.loads((out / "views.json").read_text())
    view = table["backends"]["pytorch"]
    assert table["titles"]["autoware"] == "what the car outputs"
    assert view["reference"] == "mmdet3d"
    assert view["backends"]["autoware"]["summary_delta"]["mAP"] == pytest.approx(
        results["pytorch@autoware"].mean_ap - results["pytorch"].mean_ap)
    assert set(view["backends"]["autoware"]["buckets"]) == {"0-50m", "50-90m", "90-121m", "0-121m"}
    markdown = (out / "views.md").read_text()
    assert "what training reports" in markdown and "Δ autoware" in markdown and "AP car" in markdown

    # re-scoring reuses both views' cached predictions: no network run
    evaluate_backends(dataset, {"pytorch": detector}, out, t4_metric_config(CLASSES), plots=False,
                      views={"pytorch": default_views(config, params=params)})
    assert calls["head"] == len(dataset)
    # other node parameters invalidate the autoware view's cache
    evaluate_backends(dataset, {"pytorch": detector}, out, t4_metric_config(CLASSES), plots=False)
    assert calls["head"] == 2 * len(dataset)


def test_detector_node_params_and_the_calibration_view(tmp_path: Path, dataset, config) -> None:  # noqa: F811
    detector = _tiny_detector(config)
    detector.node_params = low_threshold_params()  # what build_detector sets from a v4.1 bundle
    out = tmp_path / "eval"
    results = evaluate_backends(dataset, {"pytorch": detector}, out, t4_metric_config(CLASSES), plots=False,
                                calibration_floor=0.0102)
    assert set(results) == {"pytorch", "pytorch@autoware", "pytorch@calibration"}
    autoware, _ = load_boxes(out / "pytorch@autoware" / "predictions.json", "predictions")
    floor, meta = load_boxes(out / "pytorch@calibration" / "predictions.json", "predictions")
    assert meta["view"] == "calibration" and meta["postprocess"] == "autoware"
    kept = np.concatenate([b.scores for b in autoware.values()])
    low = np.concatenate([b.scores for b in floor.values()])
    assert kept.size > 0 and kept.min() >= np.float32(0.0103)  # the detector's own node parameters
    assert low.size > kept.size and low.min() >= np.float32(0.0102) and low.min() < 0.0103
    assert "calibration" in json.loads((out / "views.json").read_text())["backends"]["pytorch"]["backends"]
