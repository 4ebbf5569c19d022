"""The INT8 plan chosen by mAP: layer groups leave INT8 until the mAP budget holds.

The detection SNR (:mod:`.sensitivity`) is a proxy: it ranks layer groups by how much their
rounding moves the head outputs, not by what that does to the boxes, and on the demo model it
takes the wrong backbone block out first. On request (``Int8Options.by_map``) the plan is
chosen by the measure the target is stated in: the mAP of the detector's boxes on annotated
frames, scored by a :data:`PlanJudge` the caller supplies (the metric lives above the export
layer; the CLI builds it from :mod:`centerpoint_deploy.evaluate.plan_judge`).

The judged frames are annotated frames of the user's dataset that were *not* used for the
activation ranges: on the calibration frames themselves ``max`` ranges clip nothing, and on the
demo model the all-INT8 plan scored +0.0010 there against -0.0062 on 80 other frames.

The search is greedy from the other end: every group INT8 (except the given exclusions); while
the mAP drop against the fp32 graphs is over the budget, each group still in INT8 is tried
float, and the one whose removal gives the highest mAP leaves INT8 (ties: the lower detection
SNR alone). Each candidate is both graphs run on the judged frames, frame by frame, the
encoder's pillar features scattered into the head's input as in deployment; the encoder's
outputs are kept per set of float encoder groups (pillar features only, not BEV maps), so a
head-only candidate costs one head run per frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import onnx
import torch
from torch import Tensor

from centerpoint_deploy import contract
from centerpoint_deploy.errors import ExportError
from centerpoint_deploy.export.precision.calibration import CalibrationSet
from centerpoint_deploy.export.precision.int8 import quantize
from centerpoint_deploy.export.precision.plan import GroupSensitivity, MapStep
from centerpoint_deploy.export.precision.sensitivity import iter_graph, run_graph, scattered
from centerpoint_deploy.postprocess.rot_reference import undo_rot_y_axis_reference

#: Scores a candidate plan: ``(sample token, the head's task maps on that frame)`` pairs, one
#: frame at a time (the model's own convention, ``[{map name: Tensor[1, C, H, W]}]`` per task)
#: -> the mAP of the decoded boxes.
PlanJudge = Callable[[Iterable[tuple[str, list[dict[str, Tensor]]]]], float]

Parts = dict[str, onnx.ModelProto]


@dataclass(frozen=True)
class MapBudget:
    """An INT8 plan chosen by mAP: the budget, the frames it is judged on and the judge.

    Attributes:
        budget: largest accepted ``fp32 mAP - plan mAP`` on ``frames`` (>= 0).
        frames: annotated frames the plans are judged on (graph inputs as for calibration), not
            the calibration frames.
        judge: the mAP of a candidate's head outputs on ``frames``.
        report: called with each judged plan as the search goes (progress).
    """

    budget: float
    frames: CalibrationSet
    judge: PlanJudge = field(compare=False, repr=False)
    report: Callable[[MapStep], None] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.budget >= 0:
            raise ExportError(f"the INT8 mAP budget {self.budget} must be >= 0")
        if not len(self.frames):
            raise ExportError("an INT8 plan chosen by mAP needs annotated frames to judge it on")


@dataclass(frozen=True)
class MapChoice:
    """What :func:`choose_int8_by_map` decided.

    Attributes:
        graphs: part -> the chosen graph.
        excluded: part -> its groups kept float, in the order they left INT8.
        baseline_map: mAP of the fp32 graphs on the judged frames.
        steps: the search, one :class:`MapStep` per plan judged on the way (the last is the choice).
    """

    graphs: Parts
    excluded: dict[str, tuple[str, ...]]
    baseline_map: float
    steps: tuple[MapStep, ...]


class _Candidates:
    """Quantized graphs and the judged frames' encoder outputs per set of float groups (cached),
    and the head outputs of a plan frame by frame."""

    def __init__(self, fp32_paths: Mapping[str, Path], ranges: Mapping[str, Any],
                 groups: Mapping[str, Mapping[str, Sequence[str]]], frames: CalibrationSet) -> None:
        self.fp32_paths, self.ranges, self.groups, self.frames = fp32_paths, ranges, groups, frames
        self._graphs: dict[tuple[str, frozenset[str]], onnx.ModelProto] = {}
        self._pillars: dict[frozenset[str], list[dict[str, np.ndarray]]] = {}

    def graph(self, part: str, float_groups: frozenset[str]) -> onnx.ModelProto:
        """``part`` quantized with its groups in ``float_groups`` float (cached)."""
        own = frozenset(g for g in float_groups if g in self.groups[part])
        key = (part, own)
        if key not in self._graphs:
            nodes = [n for g in own for n in self.groups[part][g]]
            self._graphs[key] = quantize(self.fp32_paths[part], self.ranges[part], exclude_nodes=nodes)
        return self._graphs[key]

    def outputs(self, float_groups: frozenset[str]) -> Iterator[dict[str, np.ndarray]]:
        """The head outputs of the plan with ``float_groups`` float, frame by frame."""
        key = frozenset(g for g in float_groups if g in self.groups["encoder"])
        if key not in self._pillars:
            self._pillars[key] = run_graph(self.graph("encoder", key), self.frames.feeds("encoder"))
        return iter_graph(self.graph("head", float_groups), scattered(self._pillars[key], self.frames))


def task_maps(outputs: Iterable[dict[str, np.ndarray]], frames: CalibrationSet, num_tasks: int,
              rot_y_axis_reference: bool) -> Iterator[tuple[str, list[dict[str, Tensor]]]]:
    """``(sample token, task maps)`` of each frame's head outputs, in the model's own convention."""
    for token, out in zip(frames.frame_tokens, outputs):
        tasks = contract.split_tasks({k: torch.from_numpy(v) for k, v in out.items()}, num_tasks)
        yield token, [undo_rot_y_axis_reference(t) for t in tasks] if rot_y_axis_reference else tasks


def greedy_plan(order: Sequence[str], score: Callable[[frozenset[str]], float], baseline: float, budget: float,
                start: Sequence[str] = (), report: Callable[[MapStep], None] | None = None) -> list[MapStep]:
    """The greedy search of :func:`choose_int8_by_map` over any ``score``; its steps, the choice last.

    Args:
        order: the groups that may leave INT8, in tie-break order (first wins a tie).
        score: the mAP of the plan with the given groups float (each set scored once).
        baseline: the fp32 mAP.
        start: groups float from the start.
    """
    judged: dict[frozenset[str], float] = {}

    def judge(groups: frozenset[str]) -> float:
        if groups not in judged:
            judged[groups] = score(groups)
        return judged[groups]

    excluded = list(start)
    steps = []
    while True:
        current = frozenset(excluded)
        remaining = [g for g in order if g not in current]
        value = judge(current)
        tried = {g: judge(current | {g}) for g in remaining} if baseline - value > budget else {}
        steps.append(MapStep(tuple(excluded), value, tried))
        if report is not None:
            report(steps[-1])
        if not tried:
            return steps
        excluded.append(max(remaining, key=lambda g: tried[g]))  # max keeps the first (lowest SNR) of ties


def choose_int8_by_map(fp32_paths: Mapping[str, Path], ranges: Mapping[str, Any],
                       sensitivity: Mapping[str, Sequence[GroupSensitivity]], target: MapBudget,
                       exclude_groups: Sequence[str] = (), *, rot_y_axis_reference: bool = False,
                       num_tasks: int = 1) -> MapChoice:
    """The INT8 plan of both graphs with the fewest groups float whose mAP drop is within the budget.

    Args:
        fp32_paths: part (``"encoder"``, ``"head"``) -> its fp32 graph file.
        ranges: part -> its activation ranges (:func:`~.int8.calibrate`).
        sensitivity: part -> :func:`~.sensitivity.scan_groups`'s result (tie-break order).
        target: the budget, the judged frames and the judge.
        exclude_groups: groups kept float from the start.
        rot_y_axis_reference: the head graph emits Autoware's dim/rot convention.
        num_tasks: head tasks (output names per task, :func:`~centerpoint_deploy.contract.split_tasks`).

    Raises:
        ExportError: a judge that does not return a finite mAP.
    """
    frames = target.frames
    groups = {part: {s.group: s.nodes for s in scan} for part, scan in sensitivity.items()}
    order = sorted((s for scan in sensitivity.values() for s in scan), key=lambda s: s.worst_snr_db)
    candidates = _Candidates(fp32_paths, ranges, groups, frames)

    def score(outputs: Iterable[dict[str, np.ndarray]]) -> float:
        value = float(target.judge(task_maps(outputs, frames, num_tasks, rot_y_axis_reference)))
        if not np.isfinite(value):
            raise ExportError(f"the INT8 plan judge returned mAP {value}")
        return value

    fp32 = {part: onnx.load(str(path)) for part, path in fp32_paths.items()}
    baseline = score(iter_graph(fp32["head"], scattered(iter_graph(fp32["encoder"], frames.feeds("encoder")), frames)))
    steps = greedy_plan([s.group for s in order], lambda groups: score(candidates.outputs(groups)), baseline,
                        target.budget, exclude_groups, target.report)
    excluded = list(steps[-1].excluded)
    final = frozenset(excluded)
    return MapChoice({part: candidates.graph(part, final) for part in fp32_paths},
                     {part: tuple(g for g in excluded if g in groups[part]) for part in fp32_paths},
                     baseline, tuple(steps))
