"""The nuScenes detection metric's algorithms as free functions: no I/O, no state.

Semantics are those of nuscenes-devkit ``eval/detection/algo.py`` (``accumulate``,
``calc_ap``, ``calc_tp``); the matching is vectorised across samples instead of looping
over predictions and GT boxes in Python.

Greedy matching of one class: predictions of all samples are taken in descending score
(ties: the prediction that comes later in the input first, which is what the devkit's
``sorted((score, index))[::-1]`` does); each takes the nearest still-unmatched GT box of
its sample (ties in distance: the first GT box), and is a true positive when that
distance is ``< th``. A prediction only competes with predictions of its own sample, so
the sequence decomposes per sample: step ``r`` handles the ``r``-th prediction of every
sample at once. The Python loop runs ``max predictions per sample`` times, each step a
few array operations over ``[samples, max GT per sample]``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from centerpoint_deploy.evaluate.data_classes import CURVE_POINTS, MetricCurves, SampleBoxes

def center_distance(a_xy: np.ndarray, b_xy: np.ndarray) -> np.ndarray:
    """``ndarray[...]`` 2-D Euclidean distance (metres) between ``a_xy [..., 2]`` and ``b_xy [..., 2]``."""
    d = a_xy - b_xy
    return np.sqrt(d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1])


def yaw_difference(yaw_gt: np.ndarray, yaw_pred: np.ndarray, period: float) -> np.ndarray:
    """``ndarray[K]`` smallest absolute yaw difference in radians, in [0, pi].

    ``period`` is ``2 pi`` for boxes with a heading and ``pi`` for classes whose boxes look
    the same turned by 180 degrees (barrier).
    """
    diff = (yaw_gt - yaw_pred + period / 2) % period - period / 2
    diff = np.where(diff > np.pi, diff - 2 * np.pi, diff)
    return np.abs(diff)


def scale_iou(size_gt: np.ndarray, size_pred: np.ndarray) -> np.ndarray:
    """``ndarray[K]`` 3-D IoU of sizes ``[K, 3]`` (metres, both > 0) with centres and yaw aligned."""
    intersection = np.prod(np.minimum(size_gt, size_pred), axis=1)
    union = np.prod(size_gt, axis=1) + np.prod(size_pred, axis=1) - intersection
    return intersection / union


def cumulative_mean(values: np.ndarray) -> np.ndarray:
    """``ndarray[K]`` running mean of ``values [K]`` ignoring NaN (0 before the first number);
    all ones when every value is NaN (the devkit's ``cummean``)."""
    nan = np.isnan(values)
    if nan.all():
        return np.ones(len(values))
    sums = np.nancumsum(values.astype(float))
    counts = np.cumsum(~nan)
    return np.divide(sums, counts, out=np.zeros_like(sums), where=counts != 0)


def score_order(scores: np.ndarray) -> np.ndarray:
    """``ndarray[P]`` int64 indices of ``scores [P]`` in descending score; ties: higher index first."""
    index = np.arange(scores.shape[0])
    return np.lexsort((-index, -scores))


def greedy_match(pred_sample: np.ndarray, pred_xy: np.ndarray, gt_sample: np.ndarray, gt_xy: np.ndarray,
                 dist_ths: Sequence[float]) -> np.ndarray:
    """Greedy centre-distance matching of one class, for several thresholds at once.

    Args:
        pred_sample: ``ndarray[P]`` int sample id of each prediction; predictions must already
            be in matching order (descending score).
        pred_xy: ``ndarray[P, 2]`` prediction centres, metres.
        gt_sample: ``ndarray[G]`` int sample id of each GT box.
        gt_xy: ``ndarray[G, 2]`` GT centres, metres. Among GT boxes at equal distance, the one
            with the lowest index wins.
        dist_ths: ``T`` thresholds in metres; a match needs ``distance < th``.

    Returns:
        ``ndarray[T, P]`` int64: the matched GT index per threshold and prediction, -1 if none.
    """
    ths = np.asarray(dist_ths, dtype=np.float64)
    num_t, num_p = ths.shape[0], pred_sample.shape[0]
    matched = np.full((num_t, num_p), -1, dtype=np.int64)
    if num_p == 0 or gt_sample.shape[0] == 0:
        return matched

    # Samples with predictions, ordered by prediction count (descending), so that the samples
    # still holding an r-th prediction form a prefix at step r.
    samples, pred_counts = np.unique(pred_sample, return_counts=True)
    by_count = np.argsort(-pred_counts, kind="stable")
    samples, pred_counts = samples[by_count], pred_counts[by_count]
    num_s = samples.shape[0]
    row_of_sample = np.full(int(max(pred_sample.max(), gt_sample.max())) + 1, -1, dtype=np.int64)
    row_of_sample[samples] = np.arange(num_s)

    # Predictions per row, in matching order: pred_table [S, Kmax] (index into the P predictions).
    pred_rows = row_of_sample[pred_sample]
    pred_by_row = np.argsort(pred_rows, kind="stable")                     # keeps matching order within a row
    row_starts = np.concatenate(([0], np.cumsum(pred_counts)[:-1]))
    rank = np.arange(num_p) - row_starts[pred_rows[pred_by_row]]
    pred_table = np.full((num_s, int(pred_counts[0])), -1, dtype=np.int64)
    pred_table[pred_rows[pred_by_row], rank] = pred_by_row

    # GT boxes per row, by ascending GT index: gt_table [S, Gmax], padded slots at +inf.
    gt_rows = row_of_sample[gt_sample]
    has_row = np.flatnonzero(gt_rows >= 0)
    if has_row.size == 0:
        return matched
    gt_sorted = has_row[np.argsort(gt_rows[has_row], kind="stable")]
    gt_row_sorted = gt_rows[gt_sorted]
    gt_counts = np.bincount(gt_row_sorted, minlength=num_s)
    gt_starts = np.concatenate(([0], np.cumsum(gt_counts)[:-1]))
    gt_slot = np.arange(gt_sorted.shape[0]) - gt_starts[gt_row_sorted]
    gt_table = np.full((num_s, int(gt_counts.max())), -1, dtype=np.int64)
    gt_table[gt_row_sorted, gt_slot] = gt_sorted
    gt_table_xy = np.full(gt_table.shape + (2,), np.inf)                      # [S, Gmax, 2]
    gt_table_xy[gt_row_sorted, gt_slot] = gt_xy[gt_sorted]

    taken = np.zeros((num_t,) + gt_table.shape, dtype=bool)                    # [T, S, Gmax]
    active_per_rank = np.searchsorted(-pred_counts, -np.arange(pred_table.shape[1]), side="left")
    for r, num_active in enumerate(active_per_rank):
        preds = pred_table[:num_active, r]                                     # [n]
        dist = center_distance(pred_xy[preds][:, None, :], gt_table_xy[:num_active])  # [n, Gmax]
        rows = np.arange(num_active)
        for t in range(num_t):
            free = np.where(taken[t, :num_active], np.inf, dist)
            nearest = np.argmin(free, axis=1)                                  # first minimum
            hit = free[rows, nearest] < ths[t]
            taken[t, rows[hit], nearest[hit]] = True
            matched[t, preds[hit]] = gt_table[rows[hit], nearest[hit]]
    return matched


def accumulate(gt: SampleBoxes, gt_sample: np.ndarray, pred: SampleBoxes, pred_sample: np.ndarray,
               dist_ths: Sequence[float], yaw_period: float = 2 * np.pi) -> list[MetricCurves]:
    """Precision and TP-error curves of one class, one per distance threshold.

    Args:
        gt: GT boxes of the class, all samples concatenated.
        gt_sample: ``ndarray[G]`` int sample id of each GT box.
        pred: predictions of the class, all samples concatenated; their order only breaks
            score ties (a later prediction is taken first, as in the devkit).
        pred_sample: ``ndarray[P]`` int sample id of each prediction (same ids as ``gt_sample``).
        dist_ths: matching thresholds in metres.
        yaw_period: ``2 pi``, or ``pi`` for classes symmetric under a half turn.

    Returns:
        ``[MetricCurves]`` per threshold; :meth:`MetricCurves.no_predictions` when the class
        has no GT box or no match.
    """
    npos = len(gt)
    if npos == 0:
        return [MetricCurves.no_predictions() for _ in dist_ths]
    order = score_order(pred.scores)
    scores = pred.scores[order]
    pred_boxes = pred.boxes[order]
    pred_attrs = pred.attributes[order]
    matched = greedy_match(pred_sample[order], pred_boxes[:, :2], gt_sample, gt.boxes[:, :2], dist_ths)

    recall_grid = np.linspace(0.0, 1.0, CURVE_POINTS)
    curves = []
    for matched_gt in matched:
        is_tp = matched_gt >= 0
        if not is_tp.any():
            curves.append(MetricCurves.no_predictions())
            continue
        tp = np.cumsum(is_tp).astype(float)
        fp = np.cumsum(~is_tp).astype(float)
        precision = np.interp(recall_grid, tp / float(npos), tp / (fp + tp), right=0)
        confidence = np.interp(recall_grid, tp / float(npos), scores, right=0)

        gt_boxes = gt.boxes[matched_gt[is_tp]]
        tp_boxes = pred_boxes[is_tp]
        gt_attrs = gt.attributes[matched_gt[is_tp]]
        errors = {
            "trans_err": center_distance(tp_boxes[:, :2], gt_boxes[:, :2]),
            "vel_err": center_distance(tp_boxes[:, 7:9], gt_boxes[:, 7:9]),
            "scale_err": 1.0 - scale_iou(gt_boxes[:, 3:6], tp_boxes[:, 3:6]),
            "orient_err": yaw_difference(gt_boxes[:, 6], tp_boxes[:, 6], yaw_period),
            # 1 - accuracy; NaN (not counted) where the GT box has no attribute.
            "attr_err": np.where(gt_attrs == "", np.nan, (gt_attrs != pred_attrs[is_tp]).astype(float)),
        }
        # Each error's running mean over matches, read off at the confidence of each recall point.
        match_scores = scores[is_tp][::-1]
        resampled = {name: np.interp(confidence[::-1], match_scores, cumulative_mean(err)[::-1])[::-1]
                     for name, err in errors.items()}
        curves.append(MetricCurves(recall=recall_grid, precision=precision, confidence=confidence, **resampled))
    return curves


def calc_ap(curves: MetricCurves, min_recall: float, min_precision: float) -> float:
    """AP in [0, 1]: mean over recall points above ``min_recall`` of
    ``max(precision - min_precision, 0)``, divided by ``1 - min_precision``."""
    precision = curves.precision[round(100 * min_recall) + 1:] - min_precision
    return float(np.mean(np.clip(precision, 0.0, None))) / (1.0 - min_precision)


def calc_tp(curves: MetricCurves, min_recall: float, metric_name: str) -> float:
    """Mean of a TP error curve from just above ``min_recall`` up to the max recall reached;
    1.0 when the max recall is not above ``min_recall``."""
    first = round(100 * min_recall) + 1
    last = curves.max_recall_ind
    if last < first:
        return 1.0
    return float(np.mean(getattr(curves, metric_name)[first:last + 1]))
