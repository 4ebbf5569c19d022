"""Score-threshold calibration: per class and per distance bin, the confidence the node should keep.

From an evaluation run's predictions and ground truth, for every class and every distance bin
of the bundle (``distance_bin_upper_limits``), the minimum confidence that maximises F1 at the
centre-distance match of 2 m (or, with a target precision, the smallest one that reaches it).
The result is a :class:`~centerpoint_deploy.postprocess.node_params.ScoreThresholds`, the value
the bundle writes into ``ml_package.param.yaml``.

Calibrate on predictions made with the node's post-processing (``postprocess: autoware``) with
every score threshold at 0, so that the threshold is the only thing that varies.

Rules, those of the node (``autoware_lidar_centerpoint`` ``postprocess_kernel.cu``):

- A box's bin is the first ``i`` with ``hypot(x, y) < distance_bin_upper_limits[i]`` (float32,
  from the LiDAR origin); a box beyond the last limit is dropped by the node and is not counted.
- A box is kept when ``score >= threshold`` (the node drops ``score < threshold``).

Matching is the nuScenes metric's (:func:`~centerpoint_deploy.evaluate.algo.greedy_match`): per
class, predictions of all samples in descending score, each taking the nearest free GT box of its
sample within ``match_distance`` (strictly closer). GT boxes with 0 LiDAR points are not counted.
Because the predictions kept by a threshold are a prefix of that order, one matching per class
gives the exact TP count of every threshold. A match counts in its prediction's bin, a GT box in
its own; bins are calibrated independently (exact, except for a GT box within ``match_distance``
of a bin edge whose match could change with the neighbouring bin's threshold).
:func:`operating_point` measures a set of thresholds exactly (matching the kept boxes only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from centerpoint_deploy.errors import EvaluationError
from centerpoint_deploy.evaluate.algo import greedy_match, score_order
from centerpoint_deploy.evaluate.data_classes import SampleBoxes
from centerpoint_deploy.postprocess.node_params import DEFAULT_DISTANCE_BINS, DEFAULT_SCORE_THRESHOLD, ScoreThresholds

#: Centre-distance match of the calibration (metres), the nuScenes TP threshold.
DEFAULT_MATCH_DISTANCE = 2.0
#: A bin needs at least this many GT boxes and this many predictions to be calibrated.
DEFAULT_MIN_GT = 10
DEFAULT_MIN_PREDICTIONS = 10


def distance_bins(xy: np.ndarray, upper_limits: Sequence[float]) -> np.ndarray:
    """``ndarray[K]`` int64 bin of each centre ``xy [K, 2]`` (metres, LiDAR frame) as the node
    assigns it: the first ``i`` with ``hypot < upper_limits[i]`` in float32; ``len(upper_limits)``
    for a centre beyond the last limit."""
    xy32 = np.asarray(xy, dtype=np.float32).reshape(-1, 2)
    radial = np.sqrt(xy32[:, 0] * xy32[:, 0] + xy32[:, 1] * xy32[:, 1])
    limits = np.asarray(upper_limits, dtype=np.float32)
    return (radial[:, None] >= limits[None, :]).sum(axis=1).astype(np.int64)


@dataclass(frozen=True)
class CalibrationSettings:
    """What the calibration optimises.

    Attributes:
        distance_bin_upper_limits: ascending bin limits in metres (the bundle's).
        match_distance: centre-distance match in metres (a TP needs a strictly smaller distance).
        target_precision: ``None``: maximise F1. A value in (0, 1]: the smallest threshold whose
            precision reaches it.
        min_gt, min_predictions: fewer GT boxes or predictions in a bin keep its baseline threshold.
        default_threshold: the baseline of every cell when no other is given (the schema's 0.35).
    """

    distance_bin_upper_limits: tuple[float, ...] = DEFAULT_DISTANCE_BINS
    match_distance: float = DEFAULT_MATCH_DISTANCE
    target_precision: float | None = None
    min_gt: int = DEFAULT_MIN_GT
    min_predictions: int = DEFAULT_MIN_PREDICTIONS
    default_threshold: float = DEFAULT_SCORE_THRESHOLD

    def __post_init__(self) -> None:
        limits = tuple(float(v) for v in self.distance_bin_upper_limits)
        if not limits or any(not (math.isfinite(v) and v > 0) for v in limits) or list(limits) != sorted(set(limits)):
            raise EvaluationError(f"distance bin upper limits must be positive, finite and strictly ascending metres, "
                                  f"got {list(self.distance_bin_upper_limits)}")
        object.__setattr__(self, "distance_bin_upper_limits", limits)
        if not (math.isfinite(self.match_distance) and self.match_distance > 0):
            raise EvaluationError(f"match distance must be a positive number of metres, got {self.match_distance!r}")
        if self.target_precision is not None and not 0.0 < self.target_precision <= 1.0:
            raise EvaluationError(f"target precision must be in (0, 1], got {self.target_precision!r}")
        for name in ("min_gt", "min_predictions"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise EvaluationError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= self.default_threshold <= 1.0:
            raise EvaluationError(f"default threshold must be in [0, 1], got {self.default_threshold!r}")

    @property
    def bin_names(self) -> tuple[str, ...]:
        """``"0-50m"``, ``"50-90m"``, ... one per bin."""
        lows = (0.0,) + self.distance_bin_upper_limits[:-1]
        return tuple(f"{lo:g}-{hi:g}m" for lo, hi in zip(lows, self.distance_bin_upper_limits))


@dataclass(frozen=True)
class PRCurve:
    """Precision, recall and F1 of one class in one bin as the threshold falls through the scores.

    Attributes:
        thresholds: ``ndarray[T]`` descending candidate thresholds (the distinct prediction scores).
        precision, recall, f1: ``ndarray[T]`` of the predictions with ``score >= thresholds[t]``.
    """

    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray

    def at(self, threshold: float) -> tuple[float, float, float]:
        """``(precision, recall, f1)`` when keeping ``score >= threshold`` (zeros if nothing is kept)."""
        kept = np.flatnonzero(self.thresholds >= threshold)
        if kept.size == 0:
            return 0.0, 0.0, 0.0
        last = int(kept[-1])
        return float(self.precision[last]), float(self.recall[last]), float(self.f1[last])

    def to_dict(self) -> dict[str, list[float]]:
        return {k: getattr(self, k).tolist() for k in ("thresholds", "precision", "recall", "f1")}


@dataclass(frozen=True)
class BinCalibration:
    """The calibrated threshold of one class in one distance bin.

    Attributes:
        class_name, bin_name: which cell.
        num_gt, num_predictions: counted GT boxes and predictions in the bin.
        threshold: the chosen minimum confidence (``baseline`` where ``calibrated`` is False).
        calibrated: False when the bin kept its baseline; ``note`` says why.
        precision, recall, f1: at ``threshold`` on the calibration data.
        baseline: the threshold the cell had before (the default, or a bundle's current one).
        default_f1: F1 at ``baseline`` on the same data.
        curve: the PR curve the choice was made on (None when there was no prediction).
        note: why the baseline was kept, or ``""``.
    """

    class_name: str
    bin_name: str
    num_gt: int
    num_predictions: int
    threshold: float
    calibrated: bool
    precision: float
    recall: float
    f1: float
    baseline: float
    default_f1: float
    curve: PRCurve | None
    note: str = ""

    def to_dict(self, include_curve: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in (
            "class_name", "bin_name", "num_gt", "num_predictions", "threshold", "calibrated", "precision", "recall",
            "f1", "baseline", "default_f1", "note")}
        if include_curve:
            out["curve"] = None if self.curve is None else self.curve.to_dict()
        return out


@dataclass(frozen=True)
class Calibration:
    """Every class x bin cell and the thresholds they give.

    Attributes:
        settings: what was optimised.
        class_names: the model's classes, in head order.
        cells: ``cells[c][b]``: class ``class_names[c]``, bin ``b``.
        num_samples: samples the calibration used.
        baseline: the thresholds compared against and kept where a cell cannot be calibrated.
    """

    settings: CalibrationSettings
    class_names: tuple[str, ...]
    cells: tuple[tuple[BinCalibration, ...], ...]
    num_samples: int
    baseline: ScoreThresholds

    @property
    def baseline_label(self) -> str:
        """``"0.35"`` when every baseline cell holds that value, else ``"current"``."""
        values = {v for row in self.baseline.min_confidence_scores for v in row}
        return f"{values.pop():g}" if len(values) == 1 else "current"

    @property
    def thresholds(self) -> ScoreThresholds:
        """The calibrated :class:`ScoreThresholds` (what the bundle writes)."""
        return ScoreThresholds(self.class_names, self.settings.distance_bin_upper_limits,
                               tuple(tuple(cell.threshold for cell in row) for row in self.cells))

    def to_dict(self, include_curves: bool = True) -> dict[str, Any]:
        thresholds = self.thresholds
        return {
            "settings": {
                "distance_bin_upper_limits": list(self.settings.distance_bin_upper_limits),
                "match_distance": self.settings.match_distance, "target_precision": self.settings.target_precision,
                "min_gt": self.settings.min_gt, "min_predictions": self.settings.min_predictions,
                "default_threshold": self.settings.default_threshold,
            },
            "num_samples": self.num_samples,
            "baseline_min_confidence_scores": {n: list(r) for n, r in zip(self.baseline.class_names,
                                                                           self.baseline.min_confidence_scores)},
            "detection_score_thresholds": {
                "distance_bin_upper_limits": list(thresholds.distance_bin_upper_limits),
                "min_confidence_scores": {n: list(r) for n, r in zip(thresholds.class_names,
                                                                      thresholds.min_confidence_scores)},
            },
            "cells": [cell.to_dict(include_curves) for row in self.cells for cell in row],
        }


@dataclass
class _ClassMatches:
    """One class's counted predictions and GT boxes, matched once (internal)."""

    scores: np.ndarray     # [P] float64, in matching order (descending score)
    is_tp: np.ndarray      # [P] bool
    pred_bin: np.ndarray   # [P] int64
    gt_bin: np.ndarray     # [G] int64
    gt_hit: np.ndarray     # [G] bool, matched by some prediction


def _flatten(samples: Mapping[str, SampleBoxes], ids: Mapping[str, int]) -> tuple[SampleBoxes, np.ndarray]:
    tokens = list(samples)
    flat = SampleBoxes.concatenate([samples[t] for t in tokens])
    sample = np.repeat(np.array([ids[t] for t in tokens], dtype=np.int64), [len(samples[t]) for t in tokens])
    return flat, sample.astype(np.int64)


def _check_inputs(preds: Mapping[str, SampleBoxes], gts: Mapping[str, SampleBoxes],
                  class_names: Sequence[str]) -> None:
    if not gts:
        raise EvaluationError("calibration needs ground truth of at least one sample, got none")
    if set(preds) != set(gts):
        only_pred, only_gt = sorted(set(preds) - set(gts)), sorted(set(gts) - set(preds))
        raise EvaluationError(f"predictions and ground truth must cover the same samples: {len(only_pred)} only in "
                              f"predictions (e.g. {only_pred[:3]}), {len(only_gt)} only in ground truth "
                              f"(e.g. {only_gt[:3]})")
    known = set(class_names)
    for what, samples in (("predictions", preds), ("ground truth", gts)):
        names = set(np.concatenate([b.names for b in samples.values()]).tolist()) if samples else set()
        if names - known:
            raise EvaluationError(f"{what} hold classes {sorted(names - known)} that are not the model's "
                                  f"{list(class_names)}")


def _match_classes(preds: Mapping[str, SampleBoxes], gts: Mapping[str, SampleBoxes], class_names: Sequence[str],
                   limits: Sequence[float], match_distance: float) -> dict[str, _ClassMatches]:
    ids = {token: i for i, token in enumerate(gts)}
    gt_all, gt_sample = _flatten(gts, ids)
    pred_all, pred_sample = _flatten(preds, ids)
    gt_counted = gt_all.num_pts != 0
    gt_all, gt_sample = gt_all.select(gt_counted), gt_sample[gt_counted]
    gt_bins = distance_bins(gt_all.boxes[:, :2], limits)
    pred_bins = distance_bins(pred_all.boxes[:, :2], limits)
    out = {}
    for name in class_names:
        g = gt_all.names == name
        p = np.flatnonzero(pred_all.names == name)
        order = p[score_order(pred_all.scores[p])]
        matched = greedy_match(pred_sample[order], pred_all.boxes[order, :2], gt_sample[g], gt_all.boxes[g, :2],
                               [match_distance])[0]
        gt_hit = np.zeros(int(np.count_nonzero(g)), dtype=bool)
        gt_hit[matched[matched >= 0]] = True
        out[name] = _ClassMatches(pred_all.scores[order], matched >= 0, pred_bins[order], gt_bins[g], gt_hit)
    return out


def pr_curve(scores: np.ndarray, is_tp: np.ndarray, num_gt: int) -> PRCurve:
    """The :class:`PRCurve` of predictions ``scores [P]`` (descending) with ``is_tp [P]`` against
    ``num_gt`` GT boxes; equal scores form one point (a threshold keeps all or none of them)."""
    tp = np.cumsum(is_tp).astype(np.float64)
    kept = np.arange(1, scores.shape[0] + 1, dtype=np.float64)
    last_of_tie = np.append(scores[1:] != scores[:-1], True)             # [P] last index of each score
    tp, kept, thresholds = tp[last_of_tie], kept[last_of_tie], scores[last_of_tie]
    precision = tp / kept
    recall = tp / num_gt if num_gt else np.zeros_like(tp)
    f1 = 2.0 * tp / (kept + num_gt)
    return PRCurve(thresholds.astype(np.float64), precision, recall, f1)


def _choose(curve: PRCurve, settings: CalibrationSettings) -> int | None:
    """Index into ``curve`` of the chosen threshold, or None when no threshold qualifies."""
    if settings.target_precision is None:
        best = curve.f1.max()
        if best <= 0.0:
            return None
        return int(np.flatnonzero(curve.f1 == best)[-1])                 # the lowest threshold of the best F1
    reaching = np.flatnonzero(curve.precision >= settings.target_precision)
    return int(reaching[-1]) if reaching.size else None


def _calibrate_bin(name: str, bin_name: str, scores: np.ndarray, is_tp: np.ndarray, num_gt: int,
                   settings: CalibrationSettings, default: float) -> BinCalibration:
    curve = pr_curve(scores, is_tp, num_gt) if scores.size else None
    default_f1 = curve.at(default)[2] if curve is not None else 0.0

    def keep_default(note: str) -> BinCalibration:
        p, r, f = curve.at(default) if curve is not None else (0.0, 0.0, 0.0)
        return BinCalibration(name, bin_name, num_gt, int(scores.size), default, False, p, r, f, default, default_f1,
                              curve, note)

    if num_gt < settings.min_gt or scores.size < settings.min_predictions:
        return keep_default(f"too few to calibrate ({num_gt} GT, {scores.size} predictions; need "
                            f"{settings.min_gt} and {settings.min_predictions}): {default:g} kept")
    chosen = _choose(curve, settings)
    if chosen is None:
        goal = "no match" if settings.target_precision is None else f"precision {settings.target_precision:g} never reached"
        return keep_default(f"{goal}: {default:g} kept")
    threshold = float(curve.thresholds[chosen])
    return BinCalibration(name, bin_name, num_gt, int(scores.size), threshold, True, float(curve.precision[chosen]),
                          float(curve.recall[chosen]), float(curve.f1[chosen]), default, default_f1, curve)


def calibrate_thresholds(preds: Mapping[str, SampleBoxes], gts: Mapping[str, SampleBoxes],
                         class_names: Sequence[str], settings: CalibrationSettings | None = None,
                         baseline: ScoreThresholds | None = None) -> Calibration:
    """Per class and distance bin, the threshold of ``settings`` (max F1, or a target precision).

    Args:
        preds: sample token -> predictions (the node's boxes with every score threshold at a
            low floor: :func:`~centerpoint_deploy.postprocess.modes.calibration_view`).
        gts: sample token -> ground truth; the same samples as ``preds``.
        class_names: the model's classes, in head order (every box's class is one of them).
        settings: what to optimise (default: max F1 at 2 m, the node's bins).
        baseline: the thresholds a cell keeps when it cannot be calibrated, and the ones
            compared against (e.g. a bundle's current ones); the same classes (case aside) and
            bins as ``settings``. Default: ``settings.default_threshold`` everywhere.

    Raises:
        EvaluationError: the samples differ, a class is not the model's, no sample is given,
            or ``baseline`` has other classes or bins.
    """
    settings = settings or CalibrationSettings()
    names = tuple(class_names)
    _check_inputs(preds, gts, names)
    limits = settings.distance_bin_upper_limits
    baseline = check_baseline(baseline, names, settings)
    matches = _match_classes(preds, gts, names, limits, settings.match_distance)
    baseline_rows = baseline.min_confidence_scores
    cells = []
    for c, name in enumerate(names):
        m = matches[name]
        row = []
        for b, bin_name in enumerate(settings.bin_names):
            in_bin = m.pred_bin == b
            row.append(_calibrate_bin(name, bin_name, m.scores[in_bin], m.is_tp[in_bin],
                                      int(np.count_nonzero(m.gt_bin == b)), settings, baseline_rows[c][b]))
        cells.append(tuple(row))
    return Calibration(settings, names, tuple(cells), len(gts), baseline)


def check_baseline(baseline: ScoreThresholds | None, class_names: Sequence[str],
                   settings: CalibrationSettings) -> ScoreThresholds:
    """``baseline`` with ``class_names`` (default: ``settings.default_threshold`` in every cell).

    Raises:
        EvaluationError: ``baseline`` names other classes (case aside) or has other bins than ``settings``.
    """
    names = tuple(class_names)
    limits = settings.distance_bin_upper_limits
    if baseline is None:
        return ScoreThresholds(names, limits).at(settings.default_threshold)
    if [n.lower() for n in baseline.class_names] != [n.lower() for n in names]:
        raise EvaluationError(f"the baseline thresholds name classes {list(baseline.class_names)}, the predictions "
                              f"{list(names)}")
    if tuple(baseline.distance_bin_upper_limits) != tuple(limits):
        raise EvaluationError(f"the baseline thresholds have distance bins {list(baseline.distance_bin_upper_limits)}, "
                              f"the calibration {list(limits)}")
    return ScoreThresholds(names, limits, baseline.min_confidence_scores)


@dataclass(frozen=True)
class OperatingPoint:
    """Detection counts of a set of thresholds on some data (kept boxes matched at 2 m), per class
    and distance bin: TP and FP in the prediction's bin, FN (unmatched GT) in the GT box's bin.

    Attributes:
        class_names: the classes (rows).
        bin_names: the distance bins (columns).
        tp, fp, fn: ``ndarray[C, B]`` int64 counts; GT boxes beyond the last bin or with 0 points
            are not counted.
    """

    class_names: tuple[str, ...]
    bin_names: tuple[str, ...]
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray

    def _rows(self, name: str | None) -> slice | list[int]:
        return slice(None) if name is None else [self.class_names.index(name)]

    def f1(self, name: str | None = None, bin_index: int | None = None) -> float:
        """F1 of class ``name`` (all pooled when None), in bin ``bin_index`` (all bins when None)."""
        cols = slice(None) if bin_index is None else [bin_index]
        tp, fp, fn = (int(a[self._rows(name)][:, cols].sum()) for a in (self.tp, self.fp, self.fn))
        return 2.0 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0

    def macro_f1(self) -> float:
        """Mean over classes of the per-class F1 (bins pooled)."""
        return float(np.mean([self.f1(n) for n in self.class_names]))


def operating_point(preds: Mapping[str, SampleBoxes], gts: Mapping[str, SampleBoxes], thresholds: ScoreThresholds,
                    match_distance: float = DEFAULT_MATCH_DISTANCE) -> OperatingPoint:
    """TP / FP / FN per class and bin when the node keeps the boxes that ``thresholds`` pass.

    Boxes beyond the last distance bin are dropped (as the node does), GT boxes there or with
    0 points are not counted; the kept predictions are matched greedily by score at
    ``match_distance``.
    """
    names = thresholds.class_names
    _check_inputs(preds, gts, names)
    limits = thresholds.distance_bin_upper_limits
    tokens = list(preds)
    flat = SampleBoxes.concatenate([preds[t] for t in tokens])
    bins = distance_bins(flat.boxes[:, :2], limits)
    inside = bins < len(limits)
    table = np.array(thresholds.min_confidence_scores, dtype=np.float32)          # [C, bins]
    limit = table[_labels(flat.names, names), np.minimum(bins, len(limits) - 1)]  # [P]
    keep = inside & ~(flat.scores.astype(np.float32) < limit)
    splits = np.cumsum([len(preds[t]) for t in tokens])[:-1]
    kept_preds = {t: boxes.select(k) for t, boxes, k in zip(tokens, (preds[t] for t in tokens), np.split(keep, splits))}
    matches = _match_classes(kept_preds, gts, names, limits, match_distance)
    num_bins = len(limits)
    tp, fp, fn = (np.zeros((len(names), num_bins), dtype=np.int64) for _ in range(3))
    for c, name in enumerate(names):
        m = matches[name]
        tp[c] = np.bincount(m.pred_bin[m.is_tp], minlength=num_bins + 1)[:num_bins]
        fp[c] = np.bincount(m.pred_bin[~m.is_tp], minlength=num_bins + 1)[:num_bins]
        fn[c] = np.bincount(m.gt_bin[~m.gt_hit], minlength=num_bins + 1)[:num_bins]
    lows = (0.0,) + tuple(limits[:-1])
    return OperatingPoint(names, tuple(f"{lo:g}-{hi:g}m" for lo, hi in zip(lows, limits)), tp, fp, fn)


def _labels(names: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """``ndarray[K]`` int64 index into ``class_names`` of each of ``names [K]`` (all known)."""
    unique, inverse = np.unique(names, return_inverse=True)
    index = {n: i for i, n in enumerate(class_names)}
    return np.array([index[n] for n in unique.tolist()], dtype=np.int64)[inverse] if names.size else \
        np.zeros(0, dtype=np.int64)
