"""The evaluation loop's batching and deferred host conversion: the same boxes as one frame at a time."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from centerpoint_deploy.cli.app import run
from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.detector import Detector
from centerpoint_deploy.errors import ConfigError, EvaluationError
from centerpoint_deploy.evaluate.data_classes import HostDetections, SampleBoxes, t4_metric_config
from centerpoint_deploy.evaluate.io import load_boxes
from centerpoint_deploy.evaluate.runner import evaluate_backends
from centerpoint_deploy.postprocess.autoware import AutowarePostprocess, decode_node, node_maps
from centerpoint_deploy.postprocess.modes import default_views
from centerpoint_deploy.static_pipeline import StaticPipeline
from centerpoint_deploy.structures import Detections
from centerpoint_deploy.views import detect_views

from .test_eval_runner import CLASSES, GroundTruthDetector, _tiny_detector, config, dataset  # noqa: F401  (fixtures)
from .test_eval_views import low_threshold_params


@pytest.fixture()
def boxed_config(config: ModelConfig) -> ModelConfig:  # noqa: F811
    """The tiny model with mmdet3d's score threshold at 0: the random weights then give boxes in both views."""
    return dataclasses.replace(config, decode=dataclasses.replace(config.decode, score_threshold=0.0))


def batch_invariant_head(detector: Detector, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the head one item at a time: a convolution's floats may change in the last bit with the
    batch's shape (CPU kernels are chosen by it), everything else must not."""
    infer = detector.head.infer

    def per_item(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        (name, bev), = inputs.items()
        outputs = [infer({name: bev[i:i + 1]}) for i in range(bev.shape[0])]
        return {key: torch.cat([o[key] for o in outputs]) for key in outputs[0]}

    monkeypatch.setattr(detector.head, "infer", per_item)


def assert_same_predictions(a: dict[str, SampleBoxes], b: dict[str, SampleBoxes]) -> None:
    assert list(a) == list(b)
    for token in a:
        for field in ("boxes", "names", "scores", "attributes", "num_pts"):
            assert np.array_equal(getattr(a[token], field), getattr(b[token], field)), (token, field)


@pytest.mark.parametrize("batch_size", [2, 3])
def test_batched_predictions_equal_one_by_one(tmp_path: Path, dataset, boxed_config: ModelConfig,  # noqa: F811
                                              monkeypatch: pytest.MonkeyPatch, batch_size: int) -> None:
    detector = _tiny_detector(boxed_config)
    batch_invariant_head(detector, monkeypatch)
    views = {"pytorch": default_views(boxed_config, params=low_threshold_params())}
    metric = t4_metric_config(CLASSES)
    evaluate_backends(dataset, {"pytorch": detector}, tmp_path / "one", metric, plots=False, views=views)
    evaluate_backends(dataset, {"pytorch": detector}, tmp_path / "many", metric, plots=False, views=views,
                      batch_size=batch_size)  # 3 frames: a partial last batch with 2
    for entry in ("pytorch", "pytorch@autoware"):
        one, _ = load_boxes(tmp_path / "one" / entry / "predictions.json", "predictions")
        many, meta = load_boxes(tmp_path / "many" / entry / "predictions.json", "predictions")
        assert sum(len(b) for b in one.values()) > 0, entry
        assert_same_predictions(one, many)
    throughput = json.loads((tmp_path / "many" / "comparison.json").read_text())["throughput"]
    assert throughput["batch_size"] == batch_size and throughput["frames"] == 3


def test_batch_size_is_part_of_the_cache_key_only_above_one(tmp_path: Path, dataset, config) -> None:  # noqa: F811
    metric = t4_metric_config(CLASSES)
    oracle = GroundTruthDetector(config, dataset)
    out = tmp_path / "eval"

    def key(**kwargs: int) -> str:
        evaluate_backends(dataset, {"oracle": oracle}, out, metric, plots=False, **kwargs)
        return load_boxes(out / "oracle" / "predictions.json", "predictions")[1]["cache_key"]

    plain = key()
    calls = oracle.calls
    assert key(batch_size=1) == plain and oracle.calls == calls  # B = 1 is the plain evaluation: cache reused
    assert key(batch_size=2) != plain and oracle.calls == calls + 3
    for bad in (0, -1, 1.5, True):
        with pytest.raises(EvaluationError, match="batch_size must be an integer >= 1"):
            evaluate_backends(dataset, {"oracle": oracle}, out, metric, batch_size=bad)


def random_detections(count: int, seed: int, dtype: torch.dtype = torch.float32) -> Detections:
    generator = torch.Generator().manual_seed(seed)
    boxes = torch.rand(count, 9, generator=generator, dtype=dtype) * 4 + 0.1
    boxes[:, 7:] -= 2.1  # velocities of either sign, some below the "moving" speed
    return Detections(boxes, torch.rand(count, generator=generator, dtype=dtype),
                      torch.randint(0, len(CLASSES), (count,), generator=generator))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_deferred_host_conversion_gives_from_detections_boxes(dtype: torch.dtype) -> None:
    detections = [random_detections(7, 0, dtype), Detections.empty(), random_detections(40, 1, dtype)]
    deferred = HostDetections(detections).sample_boxes(CLASSES)
    assert [len(b) for b in deferred] == [7, 0, 40]
    for got, detection in zip(deferred, detections):
        assert_same_predictions({"t": got}, {"t": SampleBoxes.from_detections(detection, CLASSES)})
    assert HostDetections([]).sample_boxes(CLASSES) == []
    bad = Detections(torch.ones(1, 9), torch.ones(1), torch.tensor([len(CLASSES)]))
    with pytest.raises(EvaluationError, match="labels must be in"):
        HostDetections([bad]).sample_boxes(CLASSES)


@pytest.mark.parametrize("static", [False, True])
def test_a_view_like_the_detectors_own_postprocessing_takes_its_boxes(boxed_config: ModelConfig,
                                                                       static: bool) -> None:
    built = _tiny_detector(boxed_config)
    detector = StaticPipeline(boxed_config, built.encoder, built.head) if static else built
    generator = torch.Generator().manual_seed(3)
    clouds = [torch.rand(n, 5, generator=generator) * torch.tensor([24.0, 24.0, 4.0, 255.0, 0.1])
              - torch.tensor([12.0, 12.0, 2.0, 0.0, 0.0]) for n in (900, 500)]
    views = default_views(boxed_config, params=low_threshold_params())
    with torch.inference_mode():
        got = detect_views(detector, clouds, views)
        maps = detector.task_maps(detector.run_stages(clouds).head_outputs)
    for view in views:
        expected = view.postprocess(maps)
        assert [len(d) for d in got[view.name]] == [len(d) for d in expected]
        assert sum(len(d) for d in expected) > 0, view.name
        for g, e in zip(got[view.name], expected):
            assert torch.equal(g.boxes.cpu(), e.boxes.cpu()) and torch.equal(g.scores.cpu(), e.scores.cpu())
            assert torch.equal(g.labels.cpu(), e.labels.cpu())


def test_node_decode_of_a_batch_is_each_items_decode(config) -> None:  # noqa: F811
    generator = torch.Generator().manual_seed(5)
    height, width = config.feature_map_shape
    shapes = {"heatmap": len(CLASSES), "reg": 2, "height": 1, "dim": 3, "rot": 2, "vel": 2}
    maps = {name: torch.randn(3, channels, height, width, generator=generator) for name, channels in shapes.items()}
    maps["heatmap"] -= 1.0  # a few hundred cells above the node's thresholds
    params = low_threshold_params()
    batch = decode_node(node_maps(maps, True), config, params)
    for item, boxes in enumerate(batch):
        alone, = decode_node(node_maps({k: v[item:item + 1] for k, v in maps.items()}, True), config, params)
        assert alone.scores.shape[1] > 0
        for field in ("boxes", "scores", "labels", "cells"):
            assert torch.equal(getattr(boxes, field), getattr(alone, field)), (item, field)


def test_node_postprocess_of_a_batch_keeps_the_frames_apart(config) -> None:  # noqa: F811
    """Both NMS run once over the whole batch: a frame's boxes must not suppress another's (item 1 is
    item 0 again, so every box of item 1 would fall to its twin if they met)."""
    generator = torch.Generator().manual_seed(6)
    height, width = config.feature_map_shape
    shapes = {"heatmap": len(CLASSES), "reg": 2, "height": 1, "dim": 3, "rot": 2, "vel": 2}
    first = {name: torch.randn(1, channels, height, width, generator=generator) for name, channels in shapes.items()}
    first["heatmap"] -= 1.0
    third = {name: torch.randn_like(value) for name, value in first.items()}
    maps = {name: torch.cat([first[name], first[name], third[name]]) for name in shapes}
    node = AutowarePostprocess(config, low_threshold_params())
    batch = node([maps])
    assert len(batch) == 3 and len(batch[0]) > 5
    for item, got in enumerate(batch):
        alone, = node([{k: v[item:item + 1] for k, v in maps.items()}])
        assert torch.equal(got.boxes, alone.boxes) and torch.equal(got.scores, alone.scores)
        assert torch.equal(got.labels, alone.labels)


@pytest.mark.parametrize(("extra", "expected"), [
    (["--batch-size", "0"], "invalid value for '--batch-size': 0 is not >= 1"),
    (["--batch-size", "two"], "'--batch-size'"),
    (["--batch-size", "2", "--voxelization-seeds", "0,1"], "--batch-size is for the plain evaluation"),
])
def test_evaluate_batch_size_option_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
                                           expected: str) -> None:
    status = run(["evaluate", "--dataset", str(tmp_path), "-c", "tiny", "--out", str(tmp_path / "out"), *extra])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines


def test_the_evaluation_runner_starts_without_matplotlib() -> None:
    """Start-up: the plots' matplotlib (~0.3 s of imports) loads only when a plot is drawn."""
    script = ("import sys\nimport centerpoint_deploy.evaluate.runner, centerpoint_deploy.cli.evaluate\n"
              "print('matplotlib' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.stdout.strip() == "False", done.stderr[-2000:]


def test_node_candidates_without_room_for_every_kept_cell_are_decoded_again(config) -> None:  # noqa: F811
    """A frame keeping more cells than ``capacity`` (here every cell): in the GPU's fixed shapes it is
    flagged and the batch is run again exactly from the maps; exactly (the CPU's way) it is decoded
    again with room for all, without asking for the maps."""
    generator = torch.Generator().manual_seed(8)
    height, width = config.feature_map_shape
    shapes = {"heatmap": len(CLASSES), "reg": 2, "height": 1, "dim": 3, "rot": 2, "vel": 2}
    maps = {name: torch.randn(2, channels, height, width, generator=generator) for name, channels in shapes.items()}
    maps["heatmap"] -= 1.0
    params = low_threshold_params()
    roomy, tight = AutowarePostprocess(config, params), AutowarePostprocess(config, params, capacity=3)
    asked = []

    def maps_again() -> list[dict[str, torch.Tensor]]:
        asked.append(True)
        return [maps]

    exact = roomy.finish(roomy.launch([maps]), maps_again)
    assert not asked and min(len(d) for d in exact) > 3
    exactly = tight.finish(tight.launch([maps]), maps_again)
    assert not asked
    fixed = tight.finish(tight.select([maps], fixed_shapes=True), maps_again)
    assert asked == [True]
    for again in (exactly, fixed):
        for got, expected in zip(again, exact):
            assert torch.equal(got.boxes, expected.boxes) and torch.equal(got.scores, expected.scores)
            assert torch.equal(got.labels, expected.labels)
    with pytest.raises(ConfigError, match="capacity must be an integer >= 1"):
        AutowarePostprocess(config, params, capacity=0)
