"""The mAP judge of a candidate INT8 plan (:data:`~centerpoint_deploy.export.precision.map_scan.PlanJudge`).

The export layer cannot see the metric; the CLI builds this judge from annotated frames the
calibration did not use and hands it to the exporter in ``Int8Options(by_map=MapBudget(...))``.
A candidate's head outputs are decoded by mmdet3d's decode and circle NMS or by the Autoware
node's post-processing and scored against the frames' ground truth with
:func:`~centerpoint_deploy.evaluate.metrics.evaluate_boxes`.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import Tensor

from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.data.frame import Frame
from centerpoint_deploy.errors import EvaluationError
from centerpoint_deploy.evaluate.data_classes import MetricConfig, SampleBoxes
from centerpoint_deploy.evaluate.metrics import evaluate_boxes
from centerpoint_deploy.postprocess.modes import build_postprocess

#: Frames decoded per post-processing call (the maps of a batch are concatenated).
_BATCH = 16


class MapJudge:
    """mAP of decoded head outputs on annotated frames.

    Args:
        config: the model (class names, decode and NMS settings).
        frames: the frames plans are judged on; those judged must carry ground truth.
        metric: the metric settings (e.g. :func:`~centerpoint_deploy.job.inputs.job_metric_config`).
        postprocess: post-processing mode (``"mmdet3d"`` or ``"autoware"``; default the config's).
        rot_y_axis_reference: the convention of the exported head (what the node reads; autoware mode).

    Raises:
        EvaluationError: no frame carries ground truth, or a token appears twice.
    """

    def __init__(self, config: ModelConfig, frames: Sequence[Frame], metric: MetricConfig,
                 postprocess: str | None = None, rot_y_axis_reference: bool = False) -> None:
        self.class_names = tuple(config.class_names)
        self.metric = metric
        self.postprocess = build_postprocess(config, postprocess, rot_y_axis_reference=rot_y_axis_reference)
        self.ground_truth: dict[str, SampleBoxes] = {}
        for frame in frames:
            if frame.gt is None:
                continue
            if frame.token in self.ground_truth:
                raise EvaluationError(f"sample token '{frame.token}' appears twice among the frames to judge INT8 plans on")
            gt = frame.gt
            self.ground_truth[frame.token] = SampleBoxes.from_ground_truth(gt.boxes, gt.labels, gt.class_names,
                                                                           gt.num_lidar_pts, gt.attributes)
        if not self.ground_truth:
            raise EvaluationError(f"an INT8 plan chosen by mAP needs annotated frames; none of the {len(frames)} "
                                  "frames to judge it on has ground truth")

    def __call__(self, frames: Iterable[tuple[str, list[dict[str, Tensor]]]]) -> float:
        """The mAP of the boxes decoded from ``(token, per task {map: Tensor[1, C, H, W]})`` pairs on
        those frames (read one batch of frames at a time)."""
        predictions: dict[str, SampleBoxes] = {}
        chunk: list[tuple[str, list[dict[str, Tensor]]]] = []
        for token, maps in frames:
            if token not in self.ground_truth:
                raise EvaluationError(f"frame '{token}' has no ground truth to judge an INT8 plan on")
            chunk.append((token, maps))
            if len(chunk) == _BATCH:
                predictions.update(self._decode(chunk))
                chunk = []
        if chunk:
            predictions.update(self._decode(chunk))
        return evaluate_boxes(predictions, {t: self.ground_truth[t] for t in predictions}, self.metric).mean_ap

    def _decode(self, chunk: Sequence[tuple[str, list[dict[str, Tensor]]]]) -> dict[str, SampleBoxes]:
        """Boxes of a few frames, their maps concatenated into one batch."""
        first = chunk[0][1]
        batched = [{name: torch.cat([maps[task][name] for _, maps in chunk]) for name in first[task]}
                   for task in range(len(first))]
        with torch.no_grad():
            detections = self.postprocess(batched)
        return {token: SampleBoxes.from_detections(d, self.class_names) for (token, _), d in zip(chunk, detections)}
