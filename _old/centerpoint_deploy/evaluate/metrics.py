"""nuScenes-style detection metrics over a set of samples: filtering, then the devkit's two steps.

1. Filter GT and predictions: class range on the 2-D ego distance (strictly below), GT boxes
   with 0 LiDAR points removed (predictions that would have matched them become false
   positives, as in the devkit), optionally a distance window (T4MetricV2 buckets).
2. Per class: accumulate curves at every distance threshold, AP per threshold, TP errors at
   ``dist_th_tp``; summaries (mAP, mATE..mAAE, NDS) are properties of the result.

The devkit's bicycle-rack filter needs nuScenes map annotations that T4 data does not have;
it is not applied.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from centerpoint_deploy.errors import EvaluationError
from centerpoint_deploy.evaluate.algo import accumulate, calc_ap, calc_tp
from centerpoint_deploy.evaluate.data_classes import (
    HALF_TURN_SYMMETRIC_CLASSES,
    TP_METRICS,
    TP_METRICS_SKIPPED,
    DetectionMetrics,
    MetricConfig,
    SampleBoxes,
)


@dataclass(frozen=True)
class ClassCoverage:
    """How many boxes of each evaluated class the two files hold (before any range filtering).

    Attributes:
        class_names: the metric config's classes, in report order.
        num_gt: class -> GT boxes in the file.
        num_pred: class -> predictions in the file.
    """

    class_names: tuple[str, ...]
    num_gt: dict[str, int]
    num_pred: dict[str, int]

    @property
    def never_predicted(self) -> tuple[str, ...]:
        """Classes with GT boxes but not one prediction: AP 0, which counts into mAP."""
        return tuple(n for n in self.class_names if self.num_gt[n] and not self.num_pred[n])

    @property
    def absent(self) -> tuple[str, ...]:
        """Classes with neither GT nor predictions: nothing to score, yet AP 0 would count into mAP."""
        return tuple(n for n in self.class_names if not self.num_gt[n] and not self.num_pred[n])

    def describe(self) -> str:
        """One line per fact a reader of the mAP must know: which classes were scored, and
        which of them the predictions never contain."""
        lines = [f"scored {len(self.class_names)} classes (mAP is their mean): "
                 + ", ".join(f"{n} ({self.num_gt[n]} GT, {self.num_pred[n]} predicted)" for n in self.class_names)]
        if self.never_predicted:
            lines.append(f"the predictions never contain {list(self.never_predicted)}: their AP is 0")
        return "\n".join(lines)


def class_coverage(preds: Mapping[str, SampleBoxes], gts: Mapping[str, SampleBoxes],
                   config: MetricConfig) -> ClassCoverage:
    """The :class:`ClassCoverage` of ``config``'s classes in ``preds`` and ``gts``.

    Raises:
        EvaluationError: a class of the config is in neither file: scoring it would add an AP of 0
            to the mean (restrict the metric's classes instead).
    """
    def counts(samples: Mapping[str, SampleBoxes]) -> dict[str, int]:
        names = np.concatenate([b.names for b in samples.values()]) if samples else np.zeros(0, dtype=str)
        return {n: int(np.count_nonzero(names == n)) for n in config.class_names}

    coverage = ClassCoverage(config.class_names, counts(gts), counts(preds))
    if coverage.absent:
        raise EvaluationError(f"classes {list(coverage.absent)} of the metric are in neither the predictions nor "
                              f"the ground truth: their AP 0 would lower mAP for nothing; score the other classes "
                              f"with a metric-config .json (class_range of those you want)")
    return coverage


def _check_samples(preds: Mapping[str, SampleBoxes], gts: Mapping[str, SampleBoxes], config: MetricConfig) -> None:
    if set(preds) != set(gts):
        only_pred = sorted(set(preds) - set(gts))
        only_gt = sorted(set(gts) - set(preds))
        raise EvaluationError(
            f"predictions and ground truth must cover the same samples: {len(only_pred)} sample(s) only in "
            f"predictions (e.g. {only_pred[:3]}), {len(only_gt)} only in ground truth (e.g. {only_gt[:3]}); "
            f"give an empty list for a sample without detections")
    for token, boxes in preds.items():
        if len(boxes) > config.max_boxes_per_sample:
            raise EvaluationError(f"sample '{token}' has {len(boxes)} predictions; at most "
                                  f"max_boxes_per_sample={config.max_boxes_per_sample} are allowed")


def _flatten(samples: Mapping[str, SampleBoxes], sample_ids: Mapping[str, int], what: str,
             config: MetricConfig) -> tuple[SampleBoxes, np.ndarray]:
    """All boxes in mapping order, with ``ndarray[N]`` sample ids; unknown class names fail."""
    tokens = list(samples)
    flat = SampleBoxes.concatenate([samples[t] for t in tokens])
    sample = np.repeat(np.array([sample_ids[t] for t in tokens], dtype=np.int64),
                       [len(samples[t]) for t in tokens]) if tokens else np.zeros(0, dtype=np.int64)
    known = np.isin(flat.names, np.asarray(config.class_names, dtype=str))
    if not known.all():
        unknown = sorted(set(flat.names[~known].tolist()))
        raise EvaluationError(f"{what} hold class names {unknown} that the metric config does not evaluate; "
                              f"evaluated classes: {list(config.class_names)}")
    return flat, sample


def _keep_mask(boxes: SampleBoxes, config: MetricConfig, distance_window: tuple[float, float] | None) -> np.ndarray:
    """``ndarray[N]`` bool: inside the class range (and window), and not a GT box with 0 points."""
    distance = boxes.ego_distance(config.ego_origin)
    class_range = np.zeros(len(boxes))
    for name, max_distance in config.class_range.items():
        class_range[boxes.names == name] = max_distance
    keep = (distance < class_range) & (boxes.num_pts != 0)
    if distance_window is not None:
        keep &= (distance >= distance_window[0]) & (distance < distance_window[1])
    return keep


def evaluate_boxes(preds: Mapping[str, SampleBoxes], gts: Mapping[str, SampleBoxes], config: MetricConfig,
                   *, distance_window: tuple[float, float] | None = None) -> DetectionMetrics:
    """Devkit-equivalent detection metrics of ``preds`` against ``gts``.

    Args:
        preds: sample token -> predictions (scores set; ``num_pts`` -1). Every GT sample must
            be present (an empty :class:`SampleBoxes` for none); the order of samples and of
            boxes only breaks exact score ties, as the devkit's ordering does.
        gts: sample token -> ground truth (``num_pts`` = LiDAR points in each box).
        config: the metric settings.
        distance_window: optional ``(low, high)`` metres; only boxes with
            ``low <= ego distance < high`` (GT and predictions) are evaluated.

    Raises:
        EvaluationError: samples differ, too many predictions in a sample, or a class name
            that ``config.class_range`` does not list.
    """
    start = time.perf_counter()
    _check_samples(preds, gts, config)
    sample_ids = {token: i for i, token in enumerate(gts)}
    gt_all, gt_sample = _flatten(gts, sample_ids, "ground truth boxes", config)
    pred_all, pred_sample = _flatten(preds, sample_ids, "predictions", config)
    gt_keep = _keep_mask(gt_all, config, distance_window)
    pred_keep = _keep_mask(pred_all, config, distance_window)
    gt_all, gt_sample = gt_all.select(gt_keep), gt_sample[gt_keep]
    pred_all, pred_sample = pred_all.select(pred_keep), pred_sample[pred_keep]

    label_aps: dict[str, dict[float, float]] = {}
    label_tp: dict[str, dict[str, float]] = {}
    curves_by_class = {}
    num_gt, num_pred = {}, {}
    for name in config.class_names:
        gt_of_class = gt_all.names == name
        pred_of_class = pred_all.names == name
        num_gt[name], num_pred[name] = int(gt_of_class.sum()), int(pred_of_class.sum())
        period = np.pi if name in HALF_TURN_SYMMETRIC_CLASSES else 2 * np.pi
        curves = accumulate(gt_all.select(gt_of_class), gt_sample[gt_of_class],
                            pred_all.select(pred_of_class), pred_sample[pred_of_class], config.dist_ths, period)
        curves_by_class[name] = dict(zip(config.dist_ths, curves))
        label_aps[name] = {th: calc_ap(c, config.min_recall, config.min_precision)
                           for th, c in curves_by_class[name].items()}
        tp_curves = curves_by_class[name][config.dist_th_tp]
        skipped = TP_METRICS_SKIPPED.get(name, ())
        label_tp[name] = {m: (np.nan if m in skipped else calc_tp(tp_curves, config.min_recall, m))
                          for m in TP_METRICS}
    return DetectionMetrics(config=config, label_aps=label_aps, label_tp_errors=label_tp, num_gt=num_gt,
                            num_pred=num_pred, curves=curves_by_class, eval_time=time.perf_counter() - start)


def bucket_name(window: tuple[float, float]) -> str:
    """Report name of a distance window, e.g. ``"0-50m"``."""
    return f"{window[0]:g}-{window[1]:g}m"


def evaluate_distance_buckets(preds: Mapping[str, SampleBoxes], gts: Mapping[str, SampleBoxes],
                              config: MetricConfig) -> dict[str, DetectionMetrics]:
    """Metrics per ``config.distance_buckets`` window (GT and predictions both restricted to
    it), keyed by :func:`bucket_name`; empty when the config has no buckets."""
    return {bucket_name(window): evaluate_boxes(preds, gts, config, distance_window=window)
            for window in config.distance_buckets}
