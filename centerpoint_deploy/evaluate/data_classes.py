"""Validated data classes of the nuScenes-style evaluation, each with a JSON round trip.

- :class:`MetricConfig`: what the devkit's ``DetectionConfig`` holds, plus the ego origin
  in the LiDAR frame and the distance buckets of T4MetricV2.
- :class:`SampleBoxes`: the boxes of one sample (predictions or ground truth) as arrays.
- :class:`MetricCurves`: the 101-point precision / error curves of one class at one
  distance threshold (the devkit's ``DetectionMetricData``).
- :class:`DetectionMetrics`: per-class APs and TP errors, with mAP, mATE..mAAE and NDS.

Boxes use the project convention ``[x, y, z, l, w, h, yaw, vx, vy]`` (LiDAR frame, metres,
radians, m/s).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from centerpoint_deploy.device import copy_to_host
from centerpoint_deploy.evaluate.attributes import MOVING_SPEED, attributes_from_velocity
from centerpoint_deploy.errors import EvaluationError
from centerpoint_deploy.structures import Detections

#: The five true-positive error metrics, in the devkit's order.
TP_METRICS: tuple[str, ...] = ("trans_err", "scale_err", "orient_err", "vel_err", "attr_err")

#: Short names used in reports (mATE = mean over classes of ``trans_err``, ...).
TP_METRIC_SHORT_NAMES: dict[str, str] = {
    "trans_err": "mATE", "scale_err": "mASE", "orient_err": "mAOE", "vel_err": "mAVE", "attr_err": "mAAE",
}

#: TP metrics the devkit leaves out (NaN, excluded by ``nanmean``) for some classes:
#: a cone has no meaningful heading, speed or attribute; a barrier has no speed or attribute.
TP_METRICS_SKIPPED: dict[str, tuple[str, ...]] = {
    "traffic_cone": ("attr_err", "vel_err", "orient_err"),
    "barrier": ("attr_err", "vel_err"),
}

#: Classes whose heading is only defined up to 180 degrees (yaw error period pi, not 2 pi).
HALF_TURN_SYMMETRIC_CLASSES: tuple[str, ...] = ("barrier",)

#: Number of recall points of every curve (0, 0.01, ..., 1).
CURVE_POINTS = 101

#: Class ranges of the devkit's ``detection_cvpr_2019`` configuration, metres.
NUSCENES_CLASS_RANGE: dict[str, float] = {
    "car": 50.0, "truck": 50.0, "bus": 50.0, "trailer": 50.0, "construction_vehicle": 50.0,
    "pedestrian": 40.0, "motorcycle": 40.0, "bicycle": 40.0, "traffic_cone": 30.0, "barrier": 30.0,
}

#: T4MetricV2's distance buckets, metres (lower bound inclusive, upper exclusive).
T4_DISTANCE_BUCKETS: tuple[tuple[float, float], ...] = ((0.0, 50.0), (50.0, 90.0), (90.0, 121.0), (0.0, 121.0))


def _nan_to_none(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _none_to_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _require_keys(content: Mapping[str, Any], keys: Sequence[str], what: str) -> None:
    if not isinstance(content, Mapping):
        raise EvaluationError(f"{what}: expected a JSON object, got {type(content).__name__}")
    missing = [k for k in keys if k not in content]
    if missing:
        raise EvaluationError(f"{what}: missing keys {missing}; present: {sorted(content)}")


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricConfig:
    """Settings of the nuScenes-style detection metric.

    Attributes:
        class_range: class name -> maximum ego distance in metres; a box is evaluated when its
            centre's 2-D distance from the ego origin is strictly below it. Its keys are the
            evaluated classes, in report order.
        dist_ths: centre-distance matching thresholds in metres (a match needs ``dist < th``).
        dist_th_tp: the threshold whose matches give the TP errors; one of ``dist_ths``.
        min_recall: recall at and below which AP and TP errors are not counted, in [0, 1].
        min_precision: precision subtracted before averaging AP, in [0, 1).
        max_boxes_per_sample: more predictions than this in one sample is an error.
        mean_ap_weight: weight of mAP in NDS (the five TP scores weigh 1 each).
        ego_origin: ``(x, y)`` of the ego reference point in the LiDAR frame, metres. The
            devkit measures distance from the ego pose; our boxes are in the LiDAR frame, so
            the distance is ``hypot(x - ego_origin[0], y - ego_origin[1])``.
        distance_buckets: ``(low, high)`` ego-distance windows in metres reported separately
            (T4MetricV2); in each, GT and predictions with ``low <= distance < high`` are kept.
    """

    class_range: dict[str, float]
    dist_ths: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    dist_th_tp: float = 2.0
    min_recall: float = 0.1
    min_precision: float = 0.1
    max_boxes_per_sample: int = 500
    mean_ap_weight: float = 5.0
    ego_origin: tuple[float, float] = (0.0, 0.0)
    distance_buckets: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.class_range, Mapping) or not self.class_range:
            raise EvaluationError(f"class_range must be a non-empty mapping of class name to metres, "
                                  f"got {self.class_range!r}")
        for name, rng in self.class_range.items():
            if not isinstance(name, str) or not name:
                raise EvaluationError(f"class_range keys must be non-empty class names, got {name!r}")
            if not isinstance(rng, (int, float)) or not rng > 0 or not math.isfinite(rng):
                raise EvaluationError(f"class_range[{name!r}] must be a positive finite number of metres, got {rng!r}")
        object.__setattr__(self, "class_range", {k: float(v) for k, v in self.class_range.items()})
        ths = tuple(float(t) for t in self.dist_ths)
        if not ths or any(not (t > 0 and math.isfinite(t)) for t in ths) or len(set(ths)) != len(ths):
            raise EvaluationError(f"dist_ths must be distinct positive metres, got {list(self.dist_ths)}")
        object.__setattr__(self, "dist_ths", ths)
        if float(self.dist_th_tp) not in ths:
            raise EvaluationError(f"dist_th_tp must be one of dist_ths {list(ths)}, got {self.dist_th_tp!r}")
        object.__setattr__(self, "dist_th_tp", float(self.dist_th_tp))
        if not 0.0 <= self.min_recall <= 1.0:
            raise EvaluationError(f"min_recall must be in [0, 1], got {self.min_recall!r}")
        if not 0.0 <= self.min_precision < 1.0:
            raise EvaluationError(f"min_precision must be in [0, 1), got {self.min_precision!r}")
        if isinstance(self.max_boxes_per_sample, bool) or not isinstance(self.max_boxes_per_sample, int) \
                or self.max_boxes_per_sample < 1:
            raise EvaluationError(f"max_boxes_per_sample must be a positive integer, got {self.max_boxes_per_sample!r}")
        if not (self.mean_ap_weight >= 0 and math.isfinite(self.mean_ap_weight)):
            raise EvaluationError(f"mean_ap_weight must be a finite number >= 0, got {self.mean_ap_weight!r}")
        origin = tuple(float(v) for v in self.ego_origin)
        if len(origin) != 2 or not all(math.isfinite(v) for v in origin):
            raise EvaluationError(f"ego_origin must be two finite numbers (x, y) in metres, got {self.ego_origin!r}")
        object.__setattr__(self, "ego_origin", origin)
        buckets = []
        for bucket in self.distance_buckets:
            low, high = (float(v) for v in bucket) if len(bucket) == 2 else (math.nan, math.nan)
            if not (0.0 <= low < high):
                raise EvaluationError(f"distance_buckets entries must be (low, high) with 0 <= low < high metres, "
                                      f"got {bucket!r}")
            buckets.append((low, high))
        object.__setattr__(self, "distance_buckets", tuple(buckets))

    @property
    def class_names(self) -> tuple[str, ...]:
        """The evaluated classes, in report order."""
        return tuple(self.class_range)

    def to_dict(self) -> dict[str, Any]:
        return {
            "class_range": dict(self.class_range),
            "dist_ths": list(self.dist_ths),
            "dist_th_tp": self.dist_th_tp,
            "min_recall": self.min_recall,
            "min_precision": self.min_precision,
            "max_boxes_per_sample": self.max_boxes_per_sample,
            "mean_ap_weight": self.mean_ap_weight,
            "ego_origin": list(self.ego_origin),
            "distance_buckets": [list(b) for b in self.distance_buckets],
        }

    @classmethod
    def from_dict(cls, content: Mapping[str, Any]) -> "MetricConfig":
        """Inverse of :meth:`to_dict`; only ``class_range`` is required, unknown keys are an error."""
        _require_keys(content, ["class_range"], "metric config")
        allowed = set(cls.__dataclass_fields__)
        unknown = sorted(set(content) - allowed)
        if unknown:
            raise EvaluationError(f"metric config: unknown keys {unknown}; allowed: {sorted(allowed)}")
        kwargs = dict(content)
        for key in ("dist_ths", "ego_origin"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        if "distance_buckets" in kwargs:
            kwargs["distance_buckets"] = tuple(tuple(b) for b in kwargs["distance_buckets"])
        return cls(**kwargs)


def t4_metric_config(class_names: Sequence[str]) -> MetricConfig:
    """AWML's T4 metric: every class evaluated up to 121 m, T4MetricV2 distance buckets."""
    if not class_names:
        raise EvaluationError("t4_metric_config needs at least one class name, got none")
    return MetricConfig(class_range={name: 121.0 for name in class_names}, distance_buckets=T4_DISTANCE_BUCKETS)


def nuscenes_metric_config(class_names: Sequence[str] | None = None) -> MetricConfig:
    """The devkit's ``detection_cvpr_2019`` configuration.

    Without ``class_names``: all ten nuScenes classes, as the devkit scores a submission. With
    them: only those classes (in that order), with the devkit's ranges. A model of five classes
    scored over ten would get AP 0 for the five it never predicts, and half its mAP.

    Raises:
        EvaluationError: a class of ``class_names`` is not a nuScenes detection class.
    """
    if class_names is None:
        return MetricConfig(class_range=dict(NUSCENES_CLASS_RANGE))
    unknown = [name for name in class_names if name not in NUSCENES_CLASS_RANGE]
    if unknown or not class_names:
        raise EvaluationError(f"the nuscenes metric has class ranges for {list(NUSCENES_CLASS_RANGE)}; "
                              f"classes {unknown or '(none)'} are not among them: use the t4 metric or a "
                              f"metric-config .json with their class ranges")
    return MetricConfig(class_range={name: NUSCENES_CLASS_RANGE[name] for name in class_names})


# ----------------------------------------------------------------------------------------------
# Boxes of one sample
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SampleBoxes:
    """Boxes of one sample, as parallel arrays (predictions or ground truth).

    Attributes:
        boxes: ``ndarray[K, 9]`` float64, ``[x, y, z, l, w, h, yaw, vx, vy]``; centre, sizes
            and yaw finite, sizes > 0; velocity may be NaN for ground truth without one.
        names: ``ndarray[K]`` str, class names.
        scores: ``ndarray[K]`` float64 finite detection scores (-1 for ground truth).
        attributes: ``ndarray[K]`` str attribute names, ``""`` for none.
        num_pts: ``ndarray[K]`` int64 LiDAR points inside each GT box; -1 when unknown
            (predictions). GT boxes with 0 points are not evaluated.
    """

    boxes: np.ndarray
    names: np.ndarray
    scores: np.ndarray
    attributes: np.ndarray
    num_pts: np.ndarray

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float64)
        if boxes.ndim != 2 or boxes.shape[1] != 9:
            raise EvaluationError(f"boxes must have shape [K, 9] (x, y, z, l, w, h, yaw, vx, vy), "
                                  f"got {list(boxes.shape)}")
        k = boxes.shape[0]
        names = np.asarray(self.names, dtype=str).reshape(-1) if k else np.zeros(0, dtype=str)
        scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        attributes = np.asarray(self.attributes, dtype=str).reshape(-1) if k else np.zeros(0, dtype=str)
        num_pts = np.asarray(self.num_pts).reshape(-1)
        for label, arr in (("names", names), ("scores", scores), ("attributes", attributes), ("num_pts", num_pts)):
            if arr.shape[0] != k:
                raise EvaluationError(f"{label} has {arr.shape[0]} entries but boxes has {k}")
        if num_pts.size and not np.issubdtype(num_pts.dtype, np.integer):
            raise EvaluationError(f"num_pts must be integers, got dtype {num_pts.dtype}")
        if not np.isfinite(boxes[:, :7]).all():
            raise EvaluationError("boxes hold non-finite centre, size or yaw values")
        if (boxes[:, 3:6] <= 0).any():
            bad = boxes[np.flatnonzero((boxes[:, 3:6] <= 0).any(axis=1))[0], 3:6].tolist()
            raise EvaluationError(f"box sizes (l, w, h) must be > 0, got {bad}")
        if not np.isfinite(scores).all():
            raise EvaluationError("scores must be finite")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "attributes", attributes)
        object.__setattr__(self, "num_pts", num_pts.astype(np.int64))

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def select(self, index: np.ndarray) -> "SampleBoxes":
        """The boxes at ``index`` (bool mask ``[K]`` or integer indices), in that order."""
        return SampleBoxes(self.boxes[index], self.names[index], self.scores[index],
                           self.attributes[index], self.num_pts[index])

    def ego_distance(self, ego_origin: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
        """``ndarray[K]`` 2-D distance in metres of each box centre from ``ego_origin`` (x, y)."""
        dx = self.boxes[:, 0] - ego_origin[0]
        dy = self.boxes[:, 1] - ego_origin[1]
        return np.sqrt(dx * dx + dy * dy)

    @classmethod
    def empty(cls) -> "SampleBoxes":
        return cls(np.zeros((0, 9)), np.zeros(0, dtype=str), np.zeros(0), np.zeros(0, dtype=str),
                   np.zeros(0, dtype=np.int64))

    @classmethod
    def concatenate(cls, parts: Sequence["SampleBoxes"]) -> "SampleBoxes":
        """All boxes of ``parts`` in order (an empty sequence gives no boxes)."""
        if not parts:
            return cls.empty()
        return cls(np.concatenate([p.boxes for p in parts]), np.concatenate([p.names for p in parts]),
                   np.concatenate([p.scores for p in parts]), np.concatenate([p.attributes for p in parts]),
                   np.concatenate([p.num_pts for p in parts]))

    @classmethod
    def from_detections(cls, detections: Detections, class_names: Sequence[str]) -> "SampleBoxes":
        """Predictions from a detector's :class:`Detections` (labels index ``class_names``).

        Attributes follow mmdet3d's class-and-speed rule (:mod:`.attributes`)."""
        k = len(detections)

        def host(tensor: Tensor, dtype: type) -> np.ndarray:  # numpy converts: a torch operator costs more
            return tensor.detach().cpu().numpy().astype(dtype)

        return cls.from_prediction_arrays(host(detections.boxes, np.float64).reshape(k, 9),
                                          host(detections.scores, np.float64), host(detections.labels, np.int64),
                                          class_names)

    @classmethod
    def from_prediction_arrays(cls, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                               class_names: Sequence[str]) -> "SampleBoxes":
        """Predictions from host arrays: ``boxes [K, 9]``, ``scores [K]``, ``labels [K]`` indexing
        ``class_names``; attributes by mmdet3d's class-and-speed rule (:mod:`.attributes`)."""
        if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
            raise EvaluationError(f"detection labels must be in [0, {len(class_names)}) for class names "
                                  f"{list(class_names)}, got range [{labels.min()}, {labels.max()}]")
        names, attributes = _class_tables(tuple(class_names))
        moving = np.hypot(boxes[:, 7], boxes[:, 8]) > MOVING_SPEED
        return cls(boxes=boxes, names=names[labels], scores=scores, attributes=attributes[labels, moving.astype(int)],
                   num_pts=np.full(labels.shape[0], -1, dtype=np.int64))

    @classmethod
    def from_ground_truth(cls, boxes: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                          num_lidar_pts: np.ndarray, attributes: Sequence[str] | None = None) -> "SampleBoxes":
        """Ground truth from arrays: ``boxes [M, 9]``, ``labels [M]`` indexing ``class_names``,
        ``num_lidar_pts [M]``, optional ``attributes`` (``""`` for none)."""
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
            raise EvaluationError(f"GT labels must be in [0, {len(class_names)}) for class names "
                                  f"{list(class_names)}, got range [{labels.min()}, {labels.max()}]")
        m = labels.shape[0]
        return cls(
            boxes=np.asarray(boxes, dtype=np.float64).reshape(m, 9),
            names=np.asarray(class_names, dtype=str)[labels] if m else np.zeros(0, dtype=str),
            scores=np.full(m, -1.0),
            attributes=np.asarray(list(attributes) if attributes is not None else [""] * m, dtype=str),
            num_pts=np.asarray(num_lidar_pts, dtype=np.int64),
        )


class HostDetections:
    """Detections on their way to the host: one packed copy, started without waiting for it.

    On CUDA the copy goes into pinned memory with ``non_blocking`` and an event marks its end,
    so the host can queue the next batch's work first and read these boxes later
    (:meth:`sample_boxes`); on the CPU the packed tensor already is the host copy.

    Args:
        detections: one :class:`Detections` per cloud, all on one device.
    """

    #: Columns of the packed rows: ``[9 box columns, score, label]`` in float64 (labels exact).
    COLUMNS = 11

    def __init__(self, detections: Sequence[Detections]) -> None:
        self.counts = [len(d) for d in detections]
        packed = torch.cat([_packed_rows(d) for d in detections]) if detections else \
            torch.zeros(0, self.COLUMNS, dtype=torch.float64)
        (self._host,), self._event = copy_to_host(packed)

    def sample_boxes(self, class_names: Sequence[str]) -> list[SampleBoxes]:
        """One :class:`SampleBoxes` per cloud (waits for the copy), as :meth:`SampleBoxes.from_detections` gives."""
        if self._event is not None:
            self._event.synchronize()
        rows = self._host.numpy()
        out, start = [], 0
        for count in self.counts:
            part = rows[start:start + count]
            out.append(SampleBoxes.from_prediction_arrays(  # own copies: nothing keeps the pinned buffer
                np.ascontiguousarray(part[:, :9]), part[:, 9].copy(), part[:, 10].astype(np.int64), class_names))
            start += count
        return out


def _packed_rows(detections: Detections) -> Tensor:
    """``Tensor[K, 11]`` float64 on the detections' device: boxes, score, label per row."""
    k = len(detections)
    return torch.cat([detections.boxes.detach().reshape(k, 9).to(torch.float64),
                      detections.scores.detach().reshape(k, 1).to(torch.float64),
                      detections.labels.detach().reshape(k, 1).to(torch.float64)], dim=1)


@functools.lru_cache(maxsize=16)
def _class_tables(class_names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``(names [C], attributes [C, 2])``: each class's name, and its attribute when still (column 0)
    and moving (column 1) by :func:`attributes_from_velocity` (the rule reads only class and
    "moving"), so that a frame's attributes are two table look-ups."""
    names = np.asarray(class_names, dtype=str)
    speeds = np.array([[0.0, 0.0], [np.inf, 0.0]])  # still, moving
    attributes = attributes_from_velocity(np.repeat(names, 2), np.tile(speeds, (len(names), 1)))
    return names, attributes.reshape(len(names), 2)


# ----------------------------------------------------------------------------------------------
# Curves and metrics
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricCurves:
    """Curves of one class at one distance threshold, sampled at recall 0, 0.01, ..., 1.

    Attributes:
        recall: ``ndarray[101]`` ascending recall grid.
        precision: ``ndarray[101]`` interpolated precision (0 beyond the max recall reached).
        confidence: ``ndarray[101]`` descending score at each recall (0 beyond max recall).
        trans_err, vel_err, scale_err, orient_err, attr_err: ``ndarray[101]`` cumulative mean
            of each TP error over matches with score >= the confidence at that recall
            (metres, m/s, 1 - IoU, radians in [0, pi], 1 - accuracy).
    """

    recall: np.ndarray
    precision: np.ndarray
    confidence: np.ndarray
    trans_err: np.ndarray
    vel_err: np.ndarray
    scale_err: np.ndarray
    orient_err: np.ndarray
    attr_err: np.ndarray

    _FIELDS = ("recall", "precision", "confidence", "trans_err", "vel_err", "scale_err", "orient_err", "attr_err")

    def __post_init__(self) -> None:
        for name in self._FIELDS:
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.shape != (CURVE_POINTS,):
                raise EvaluationError(f"curve '{name}' must have {CURVE_POINTS} points, got shape {list(arr.shape)}")
            object.__setattr__(self, name, arr)
        if (np.diff(self.confidence) > 0).any():
            raise EvaluationError("curve 'confidence' must be non-increasing along recall")
        if (np.diff(self.recall) < 0).any():
            raise EvaluationError("curve 'recall' must be non-decreasing")

    @classmethod
    def no_predictions(cls) -> "MetricCurves":
        """Curves of a class with no GT or no match: precision 0, every error 1."""
        ones = np.ones(CURVE_POINTS)
        return cls(np.linspace(0.0, 1.0, CURVE_POINTS), np.zeros(CURVE_POINTS), np.zeros(CURVE_POINTS),
                   ones, ones, ones, ones, ones)

    @property
    def max_recall_ind(self) -> int:
        """Index of the last recall point with a non-zero confidence (0 when there is none)."""
        nonzero = np.flatnonzero(self.confidence)
        return int(nonzero[-1]) if nonzero.size else 0

    @property
    def max_recall(self) -> float:
        return float(self.recall[self.max_recall_ind])

    def to_dict(self) -> dict[str, list[float | None]]:
        return {name: [_nan_to_none(v) for v in getattr(self, name).tolist()] for name in self._FIELDS}

    @classmethod
    def from_dict(cls, content: Mapping[str, Any]) -> "MetricCurves":
        _require_keys(content, cls._FIELDS, "metric curves")
        return cls(**{name: np.array([_none_to_nan(v) for v in content[name]]) for name in cls._FIELDS})


@dataclass
class DetectionMetrics:
    """Per-class APs and TP errors of one evaluation, and their summaries.

    Attributes:
        config: the metric settings used.
        label_aps: class -> distance threshold (m) -> AP in [0, 1].
        label_tp_errors: class -> TP metric name -> error (NaN where the devkit skips it).
        num_gt: class -> evaluated GT boxes (after range / point filtering).
        num_pred: class -> evaluated predictions (after range filtering).
        curves: class -> distance threshold -> :class:`MetricCurves` (empty after loading a
            summary saved without curves).
        eval_time: seconds the metric computation took, or None.
    """

    config: MetricConfig
    label_aps: dict[str, dict[float, float]]
    label_tp_errors: dict[str, dict[str, float]]
    num_gt: dict[str, int] = field(default_factory=dict)
    num_pred: dict[str, int] = field(default_factory=dict)
    curves: dict[str, dict[float, MetricCurves]] = field(default_factory=dict)
    eval_time: float | None = None

    @property
    def mean_dist_aps(self) -> dict[str, float]:
        """Class -> AP averaged over the distance thresholds."""
        return {name: float(np.mean(list(self.label_aps[name].values()))) for name in self.config.class_names}

    @property
    def mean_ap(self) -> float:
        """mAP: mean over classes of :attr:`mean_dist_aps`."""
        return float(np.mean(list(self.mean_dist_aps.values())))

    @property
    def tp_errors(self) -> dict[str, float]:
        """TP metric -> mean over classes ignoring NaN (NaN only when every class skips it)."""
        out = {}
        for metric in TP_METRICS:
            values = np.array([self.label_tp_errors[name][metric] for name in self.config.class_names])
            out[metric] = float(np.nanmean(values)) if (~np.isnan(values)).any() else math.nan
        return out

    @property
    def tp_scores(self) -> dict[str, float]:
        """TP metric -> ``max(0, 1 - error)``; 0 for an all-NaN metric, as in the devkit."""
        return {m: (0.0 if math.isnan(e) else max(0.0, 1.0 - e)) for m, e in self.tp_errors.items()}

    @property
    def nd_score(self) -> float:
        """NDS = (mean_ap_weight * mAP + sum of TP scores) / (mean_ap_weight + 5)."""
        total = self.config.mean_ap_weight * self.mean_ap + float(np.sum(list(self.tp_scores.values())))
        return total / (self.config.mean_ap_weight + len(TP_METRICS))

    def summary(self) -> dict[str, float]:
        """``{"mAP", "NDS", "mATE", "mASE", "mAOE", "mAVE", "mAAE"}``."""
        out = {"mAP": self.mean_ap, "NDS": self.nd_score}
        out.update({TP_METRIC_SHORT_NAMES[m]: e for m, e in self.tp_errors.items()})
        return out

    def to_dict(self, include_curves: bool = True) -> dict[str, Any]:
        """JSON-ready dict; NaN becomes ``null``; threshold keys are strings like ``"0.5"``."""
        out: dict[str, Any] = {
            "mean_ap": self.mean_ap,
            "nd_score": self.nd_score,
            "tp_errors": {m: _nan_to_none(e) for m, e in self.tp_errors.items()},
            "tp_scores": self.tp_scores,
            "mean_dist_aps": self.mean_dist_aps,
            "label_aps": {n: {str(th): ap for th, ap in d.items()} for n, d in self.label_aps.items()},
            "label_tp_errors": {n: {m: _nan_to_none(e) for m, e in d.items()} for n, d in self.label_tp_errors.items()},
            "num_gt": dict(self.num_gt),
            "num_pred": dict(self.num_pred),
            "eval_time": self.eval_time,
            "config": self.config.to_dict(),
        }
        if include_curves:
            out["curves"] = {n: {str(th): c.to_dict() for th, c in d.items()} for n, d in self.curves.items()}
        return out

    @classmethod
    def from_dict(cls, content: Mapping[str, Any]) -> "DetectionMetrics":
        """Inverse of :meth:`to_dict` (derived summaries are recomputed, not read)."""
        _require_keys(content, ["config", "label_aps", "label_tp_errors"], "detection metrics")
        config = MetricConfig.from_dict(content["config"])
        label_aps = {n: {float(th): float(ap) for th, ap in d.items()} for n, d in content["label_aps"].items()}
        label_tp = {n: {m: _none_to_nan(e) for m, e in d.items()} for n, d in content["label_tp_errors"].items()}
        for name in config.class_names:
            if name not in label_aps or name not in label_tp:
                raise EvaluationError(f"detection metrics: class '{name}' of the config has no APs / TP errors")
        curves = {n: {float(th): MetricCurves.from_dict(c) for th, c in d.items()}
                  for n, d in content.get("curves", {}).items()}
        return cls(config=config, label_aps=label_aps, label_tp_errors=label_tp,
                   num_gt={k: int(v) for k, v in content.get("num_gt", {}).items()},
                   num_pred={k: int(v) for k, v in content.get("num_pred", {}).items()},
                   curves=curves, eval_time=content.get("eval_time"))
