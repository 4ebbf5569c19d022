"""The INT8 plan chosen by mAP: the greedy search, its wiring into the export and the mAP judge."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.data.frame import Frame, GroundTruth
from centerpoint_deploy.errors import EvaluationError, ExportError
from centerpoint_deploy.evaluate.data_classes import t4_metric_config
from centerpoint_deploy.evaluate.plan_judge import MapJudge
from centerpoint_deploy.export.manifest import load_manifest
from centerpoint_deploy.export.onnx_export import export_onnx
from centerpoint_deploy.export.precision.calibration import collect_calibration
from centerpoint_deploy.export.precision.convert import Int8Options
from centerpoint_deploy.export.precision.int8 import quantized_layers
from centerpoint_deploy.export.precision.map_scan import MapBudget, greedy_plan
from centerpoint_deploy.export.precision.plan import MapStep, PlanRecord, load_plan
from centerpoint_deploy.postprocess import postprocess


def test_greedy_plan_takes_out_the_group_whose_removal_gains_most() -> None:
    table = {(): 0.70, ("a",): 0.75, ("b",): 0.78, ("c",): 0.71, ("a", "b"): 0.79, ("b", "c"): 0.80}
    calls: list[tuple[str, ...]] = []

    def score(groups: frozenset[str]) -> float:
        calls.append(tuple(sorted(groups)))
        return table[tuple(sorted(groups))]

    steps = greedy_plan(["a", "b", "c"], score, baseline=0.80, budget=0.005)
    # "a" is first in the SNR order, but "b" gains most; then "c" brings the plan within the budget
    assert [s.excluded for s in steps] == [(), ("b",), ("b", "c")]
    assert steps[0].tried == {"a": 0.75, "b": 0.78, "c": 0.71} and steps[-1].tried == {}
    assert steps[-1].map == 0.80 and len(calls) == len(set(calls))  # every plan judged once


def test_greedy_plan_keeps_everything_int8_within_the_budget_and_breaks_ties_by_order() -> None:
    assert greedy_plan(["a", "b"], lambda g: 0.799, baseline=0.80, budget=0.0025) == [MapStep((), 0.799, {})]
    steps = greedy_plan(["x", "a", "b"], lambda g: 0.80 if g else 0.70, baseline=0.80, budget=0.0, start=["x"])
    assert steps[0].excluded == ("x",) and steps[0].map == 0.80 and len(steps) == 1
    tie = greedy_plan(["a", "b"], lambda g: {0: 0.7, 1: 0.8}.get(len(g), 0.8), baseline=0.80, budget=0.0)
    assert [s.excluded for s in tie] == [(), ("a",)]


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory, tiny_config: ModelConfig) -> list[Frame]:
    from centerpoint_deploy.data import open_dataset
    from centerpoint_deploy.data.synthetic import LidarConfig, generate_dataset

    root = tmp_path_factory.mktemp("map_calib")
    generate_dataset(root, num_scenes=1, frames_per_scene=6, seed=9, sensor=LidarConfig(beams=16, columns=360))
    dataset = open_dataset(root, class_names=tiny_config.class_names)
    return [dataset[i] for i in range(len(dataset))]


class _ScriptedJudge:
    """Returns the given mAPs in call order (the fp32 baseline first); records what it saw."""

    def __init__(self, values: list[float]) -> None:
        self.values, self.seen = list(values), []

    def __call__(self, frames) -> float:
        self.seen.append(sorted(token for token, _ in frames))
        return self.values.pop(0) if len(self.values) > 1 else self.values[0]


def test_export_keeps_float_the_group_the_judge_prefers(tmp_path: Path, tiny_model, tiny_config, frames) -> None:
    model = tiny_model.eval()
    calibration = collect_calibration(model, tiny_config, frames[:4])
    judged = collect_calibration(model, tiny_config, frames[4:])
    # baseline 0.9, everything INT8 0.8, then the candidates in SNR order: the second one wins
    judge = _ScriptedJudge([0.9, 0.8, 0.85, 0.9, 0.85])
    options = Int8Options(method="max", check_frames=1, by_map=MapBudget(0.001, judged, judge))
    result = export_onnx(model, tiny_config, tmp_path / "int8", precision="int8", calibration=calibration,
                         int8=options)
    plan = load_plan(result.manifest.deploy_dir)
    order = sorted((s for p in plan.parts for s in p.sensitivity), key=lambda s: s.worst_snr_db)
    assert judge.seen[0] == sorted(judged.frame_tokens)  # judged on the frames given, not the calibration's
    assert not set(judged.frame_tokens) & set(plan.calibration_frames)
    assert plan.snr_budget_db is None and plan.map_budget == 0.001 and plan.baseline_map == 0.9
    assert [s.excluded for s in plan.map_steps] == [(), (order[1].group,)]
    assert plan.map_drop == pytest.approx(0.0) and plan.map_frames == judged.frame_tokens
    kept_part = next(p for p in plan.parts if order[1].group in p.excluded_groups)
    graph = onnx.load(str(result.manifest.onnx_path(kept_part.part)))
    assert set(order[1].nodes) == set(kept_part.float_nodes)
    assert not set(order[1].nodes) & set(quantized_layers(graph))
    record = load_manifest(result.manifest.deploy_dir).precision_plan
    assert record == PlanRecord.of(plan) and record.map_budget == 0.001 and record.map_drop == pytest.approx(0.0)


def test_a_judge_without_a_finite_map_and_a_bad_budget_are_errors(tmp_path: Path, tiny_model, tiny_config,
                                                                   frames) -> None:
    model = tiny_model.eval()
    calibration = collect_calibration(model, tiny_config, frames[:4])
    judged = collect_calibration(model, tiny_config, frames[4:])
    with pytest.raises(ExportError, match="must be >= 0"):
        MapBudget(-0.1, judged, lambda maps: 0.0)
    with pytest.raises(ExportError, match="returned mAP nan"):
        export_onnx(model, tiny_config, tmp_path / "nan", precision="int8", calibration=calibration,
                    int8=Int8Options(check_frames=1, by_map=MapBudget(0.0, judged, lambda maps: float("nan"))))
    assert not (tmp_path / "nan" / "deploy_metadata.yaml").exists()


def _hot_maps(cells: list[tuple[int, int]], size: int) -> list[dict[str, torch.Tensor]]:
    maps = {"heatmap": torch.full((1, 5, size, size), -30.0), "reg": torch.zeros(1, 2, size, size),
            "height": torch.zeros(1, 1, size, size), "dim": torch.full((1, 3, size, size), 0.5),
            "rot": torch.zeros(1, 2, size, size), "vel": torch.zeros(1, 2, size, size)}
    maps["rot"][:, 1] = 1.0
    for y, x in cells:
        maps["heatmap"][0, 0, y, x] = 3.0
    return [maps]


def test_map_judge_scores_decoded_maps_against_the_frames_ground_truth(tiny_config: ModelConfig) -> None:
    size = tiny_config.bev_shape[0] // tiny_config.decode.out_size_factor
    assert tiny_config.bev_shape[0] == tiny_config.bev_shape[1]
    truth = _hot_maps([(size // 2, size // 2 + 2)], size)
    boxes = postprocess(truth, tiny_config)[0]
    gt = GroundTruth(boxes.boxes.numpy().astype(np.float64), boxes.labels.numpy(), tuple(tiny_config.class_names),
                     np.full(len(boxes), 10), [""] * len(boxes), [""] * len(boxes))
    frame = Frame("f0", "s", 0, "f0.bin", np.zeros((0, 5), np.float32), gt)
    judge = MapJudge(tiny_config, [frame, dataclasses.replace(frame, token="nogt", gt=None)],
                     t4_metric_config(tiny_config.class_names))
    perfect = judge([("f0", truth)])
    moved = judge([("f0", _hot_maps([(2, 2)], size))])
    assert perfect > moved
    node = MapJudge(tiny_config, [frame], t4_metric_config(tiny_config.class_names), postprocess="autoware")
    assert node([("f0", truth)]) > node([("f0", _hot_maps([(2, 2)], size))])
    with pytest.raises(EvaluationError, match="no ground truth"):
        judge([("nogt", truth)])
    with pytest.raises(EvaluationError, match="annotated"):
        MapJudge(tiny_config, [dataclasses.replace(frame, gt=None)], t4_metric_config(tiny_config.class_names))
