"""The evaluation driver: reports, cache reuse, comparison deltas, BEV images."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from centerpoint_deploy.backends.factory import create_backends
from centerpoint_deploy.config import load_config
from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.data.dataset import FrameDataset, FrameRecord
from centerpoint_deploy.data.frame import GroundTruth
from centerpoint_deploy.data.pointcloud import write_points_bin
from centerpoint_deploy.data.sweeps import SweepOptions
from centerpoint_deploy.detector import Detector
from centerpoint_deploy.errors import EvaluationError
from centerpoint_deploy.evaluate.data_classes import t4_metric_config
from centerpoint_deploy.evaluate.io import load_boxes, load_metrics
from centerpoint_deploy.evaluate.runner import evaluate_backends, fingerprint_files
from centerpoint_deploy.structures import Detections

CLASSES = ("car", "truck", "bus", "bicycle", "pedestrian")


@pytest.fixture(scope="module")
def config() -> ModelConfig:
    return load_config("tiny")


@pytest.fixture()
def dataset(tmp_path: Path) -> FrameDataset:
    rng = np.random.default_rng(0)
    records = []
    for i in range(3):
        points = np.concatenate([rng.uniform(-12, 12, (400, 2)), rng.uniform(-2, 2, (400, 1)),
                                 rng.uniform(0, 255, (400, 1)), np.zeros((400, 1))], axis=1)
        path = tmp_path / "points" / f"{i}.bin"
        write_points_bin(path, points)
        boxes = np.array([[3.0 + i, 2.0, 0.0, 4.0, 2.0, 1.5, 0.1, 1.0, 0.0],
                          [-60.0 + i, 5.0, 0.0, 0.8, 0.6, 1.7, 0.0, 0.0, 0.0]], dtype=np.float32)
        gt = GroundTruth(boxes, np.array([0, 4]), CLASSES, np.array([12, 3]), ["vehicle.moving", ""], ["a", "b"])
        records.append(FrameRecord(f"token-{i}", "scene", 1000 * i, str(path), np.eye(4), np.eye(4), (), gt))
    return FrameDataset(records, CLASSES, load_dim=5, sweep_options=SweepOptions(sweeps_num=0))


class GroundTruthDetector:
    """Detects exactly the GT of the frame whose points it is given (score 0.9); counts calls."""

    def __init__(self, config: ModelConfig, dataset: FrameDataset) -> None:
        self.config = config
        self.calls = 0
        use_dim = list(config.points.use_dim)
        self._gt = {dataset[i].points[:, use_dim].astype(np.float32).tobytes(): dataset.records[i].gt
                    for i in range(len(dataset))}

    def __call__(self, points: torch.Tensor) -> Detections:
        self.calls += 1
        gt = self._gt[points.numpy().tobytes()]
        return Detections(torch.from_numpy(gt.boxes), torch.full((len(gt),), 0.9), torch.from_numpy(gt.labels))


def _tiny_detector(config: ModelConfig) -> Detector:
    torch.manual_seed(0)
    encoder, head, rot = create_backends("pytorch", config, device="cpu")
    return Detector(config, encoder, head, rot_y_axis_reference=rot)


def test_reports_cache_and_comparison(tmp_path: Path, dataset: FrameDataset, config: ModelConfig) -> None:
    out = tmp_path / "eval"
    metric = t4_metric_config(CLASSES)
    oracle = GroundTruthDetector(config, dataset)
    detectors = {"oracle": oracle, "pytorch": _tiny_detector(config)}
    results = evaluate_backends(dataset, detectors, out, metric, render_frames=[1])

    assert results["oracle"].mean_ap == pytest.approx(2 / 5, abs=1e-12)    # car and pedestrian perfect, 3 classes empty
    for name in ("oracle", "pytorch"):
        for file in ("predictions.json", "metrics.json", "metrics.md", "pr_curves.png"):
            assert (out / name / file).is_file(), (name, file)
    assert load_metrics(out / "oracle" / "metrics.json").summary() == results["oracle"].summary()
    gts, meta = load_boxes(out / "ground_truth.json", "ground_truth")
    assert list(gts) == ["token-0", "token-1", "token-2"] and meta["class_names"] == list(CLASSES)

    table = json.loads((out / "comparison.json").read_text())
    assert table["reference"] == "oracle"
    delta = table["backends"]["pytorch"]["summary_delta"]["mAP"]
    assert delta == pytest.approx(results["pytorch"].mean_ap - results["oracle"].mean_ap)
    buckets = table["backends"]["oracle"]["buckets"]
    assert list(buckets) == ["0-50m", "50-90m", "90-121m", "0-121m"]
    assert buckets["0-50m"]["summary"]["mAP"] == pytest.approx(1 / 5, abs=1e-12)   # only the car is within 50 m
    assert "Backend comparison" in (out / "comparison.md").read_text()
    assert "| car |" in (out / "oracle" / "metrics.md").read_text()
    assert (out / "bev" / "00001_token-1.png").is_file()

    # Second run with other metric settings: predictions come from the cache, no detector call.
    calls = oracle.calls
    again = evaluate_backends(dataset, detectors, out, t4_metric_config(("car", "pedestrian")), plots=False)
    assert oracle.calls == calls
    assert again["oracle"].mean_ap == pytest.approx(1.0, abs=1e-12)
    assert again["pytorch"].label_aps["car"] == results["pytorch"].label_aps["car"]
    # A different weight fingerprint invalidates the cache of that backend only.
    evaluate_backends(dataset, detectors, out, metric, fingerprints={"oracle": "other-weights"}, plots=False)
    assert oracle.calls == calls + 3


def test_frames_subset_and_errors(tmp_path: Path, dataset: FrameDataset, config: ModelConfig) -> None:
    oracle = GroundTruthDetector(config, dataset)
    metric = t4_metric_config(CLASSES)
    evaluate_backends(dataset, {"oracle": oracle}, tmp_path / "a", metric, frames=[0, 1], cache=False, plots=False)
    assert not (tmp_path / "a" / "oracle" / "pr_curves.png").exists()
    predictions, _ = load_boxes(tmp_path / "a" / "oracle" / "predictions.json", "predictions")
    assert list(predictions) == ["token-0", "token-1"]
    (tmp_path / "a" / "oracle" / "predictions.json").write_text("{truncated")
    calls = oracle.calls
    evaluate_backends(dataset, {"oracle": oracle}, tmp_path / "a", metric, frames=[0, 1], plots=False)
    assert oracle.calls == calls + 2                       # an unreadable cache is rebuilt
    with pytest.raises(EvaluationError, match="outside"):
        evaluate_backends(dataset, {"oracle": oracle}, tmp_path / "b", metric, frames=[5])
    with pytest.raises(EvaluationError, match="folder names"):
        evaluate_backends(dataset, {"on nx/rt": oracle}, tmp_path / "b", metric)
    with pytest.raises(EvaluationError, match="render_frames"):
        evaluate_backends(dataset, {"oracle": oracle}, tmp_path / "b", metric, frames=[0], render_frames=[2])


def test_fingerprint_files(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.onnx").write_bytes(b"abc")
    first = fingerprint_files(tmp_path / "d")
    (tmp_path / "d" / "a.onnx").write_bytes(b"abd")
    assert fingerprint_files(tmp_path / "d") != first
    assert len(fingerprint_files(tmp_path / "d" / "a.onnx")) == 64
    with pytest.raises(EvaluationError, match="does not exist"):
        fingerprint_files(tmp_path / "missing")


def _swap_bytes_keep_stat(a: Path, b: Path) -> None:
    """Exchange two point files' contents, keeping each file's size and modification time."""
    stats = [a.stat(), b.stat()]
    content_a, content_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(content_b)
    b.write_bytes(content_a)
    for path, st in zip((a, b), stats):
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_cache_is_keyed_by_content(tmp_path: Path, dataset: FrameDataset, config: ModelConfig) -> None:
    out = tmp_path / "eval"
    metric = t4_metric_config(CLASSES)
    oracle = GroundTruthDetector(config, dataset)
    first = evaluate_backends(dataset, {"oracle": oracle}, out, metric, plots=False)
    assert first["oracle"].mean_ap == pytest.approx(2 / 5, abs=1e-12) and oracle.calls == 3
    evaluate_backends(dataset, {"oracle": oracle}, out, metric, plots=False)
    assert oracle.calls == 3                                   # same content: cached

    # Another scene's points under the same names, sizes and times: the cache must not be trusted.
    paths = [Path(r.lidar_path) for r in dataset.records]
    _swap_bytes_keep_stat(paths[0], paths[1])
    swapped = evaluate_backends(dataset, {"oracle": oracle}, out, metric, plots=False)
    assert oracle.calls == 6
    assert swapped["oracle"].mean_ap < first["oracle"].mean_ap  # frame 0 now "sees" frame 1's objects

    # A changed pose / calibration of one frame invalidates it as well.
    moved = dataset.records[2].__class__(**{**dataset.records[2].__dict__, "lidar2ego": np.diag([1.0, 1, 1, 1]) * 2})
    dataset.records[2] = moved
    evaluate_backends(dataset, {"oracle": oracle}, out, metric, plots=False)
    assert oracle.calls == 9


def test_cache_key_covers_detector_settings(config: ModelConfig) -> None:
    from centerpoint_deploy.evaluate.cache_key import prediction_cache_key

    detector = _tiny_detector(config)
    key = prediction_cache_key("pytorch", detector, "inputs", "weights")
    assert key == prediction_cache_key("pytorch", _tiny_detector(config), "inputs", "weights")
    detector.nms_rounds = 3
    assert prediction_cache_key("pytorch", detector, "inputs", "weights") != key
    detector.nms_rounds = _tiny_detector(config).nms_rounds
    detector.rot_y_axis_reference = not detector.rot_y_axis_reference
    assert prediction_cache_key("pytorch", detector, "inputs", "weights") != key
    assert prediction_cache_key("pytorch", _tiny_detector(config), "inputs", "other") != key


def test_throughput_in_the_report(tmp_path: Path, dataset: FrameDataset, config: ModelConfig) -> None:
    out = tmp_path / "eval"
    evaluate_backends(dataset, {"oracle": GroundTruthDetector(config, dataset)}, out, t4_metric_config(CLASSES),
                      plots=False, workers=1)
    throughput = json.loads((out / "comparison.json").read_text())["throughput"]
    assert throughput["frames"] == 3 and throughput["ranks"] == 1 and throughput["frames_per_s"] > 0
    rank = throughput["per_rank"][0]
    assert rank["workers"] == 1 and rank["read_s"] > 0 and set(rank["compute_s"]) == {"oracle"}
    assert "frames/s" in (out / "comparison.md").read_text()
    evaluate_backends(dataset, {"oracle": GroundTruthDetector(config, dataset)}, out, t4_metric_config(CLASSES),
                      plots=False)
    cached = json.loads((out / "comparison.json").read_text())["throughput"]
    assert cached["frames"] == 0 and cached["cached"] == ["oracle"]
