"""Agreement with nuscenes-devkit (the oracle) on random box sets.

The devkit's own ``accumulate`` / ``calc_ap`` / ``calc_tp`` / ``DetectionMetrics`` run on the
same boxes; its range and zero-point filters are applied here as ``filter_eval_boxes`` does
them (its bicycle-rack filter needs a nuScenes map database and is not part of our metric).
Scores are quantised so that exact ties occur (the devkit's tie order is deterministic and
reproduced), some predictions are exact duplicates, and some GT velocities are NaN.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("nuscenes.eval.detection.algo")
from nuscenes.eval.common.data_classes import EvalBoxes  # noqa: E402
from nuscenes.eval.common.utils import center_distance as devkit_center_distance  # noqa: E402
from nuscenes.eval.detection import algo as devkit  # noqa: E402
from nuscenes.eval.detection.data_classes import DetectionBox, DetectionConfig  # noqa: E402
from nuscenes.eval.detection.data_classes import DetectionMetrics as DevkitMetrics  # noqa: E402
from pyquaternion import Quaternion  # noqa: E402

from centerpoint_deploy.evaluate.data_classes import (  # noqa: E402
    NUSCENES_CLASS_RANGE,
    TP_METRICS,
    TP_METRICS_SKIPPED,
    SampleBoxes,
    nuscenes_metric_config,
)
from centerpoint_deploy.evaluate.metrics import evaluate_boxes  # noqa: E402

CLASSES = np.array(list(NUSCENES_CLASS_RANGE))
ATTRIBUTES = np.array(["", "vehicle.moving", "vehicle.parked", "pedestrian.moving"])
TOLERANCE = 1e-9


def _random_rows(rng: np.random.Generator, k: int) -> np.ndarray:
    return np.concatenate([rng.uniform(-60, 60, (k, 2)), rng.uniform(-2, 2, (k, 1)), rng.uniform(0.3, 5, (k, 3)),
                           rng.uniform(-4, 4, (k, 1)), rng.normal(0, 2, (k, 2))], axis=1)


def _random_scene(rng: np.random.Generator, num_samples: int) -> tuple[dict[str, SampleBoxes], dict[str, SampleBoxes]]:
    gts, preds = {}, {}
    for s in range(num_samples):
        k = int(rng.integers(0, 14))
        rows = _random_rows(rng, k)
        rows[rng.random(k) < 0.2, 7:9] = np.nan
        gt = SampleBoxes(rows, rng.choice(CLASSES, k), np.full(k, -1.0), rng.choice(ATTRIBUTES, k),
                         rng.integers(0, 4, k))
        # Predictions: noisy copies of some GT (some relabelled), random extras, duplicates.
        copy = rng.random(k) < 0.8
        noisy = gt.boxes[copy] + rng.normal(0, 0.8, (int(copy.sum()), 9)) * [1, 1, 0.1, 0, 0, 0, 0.5, 1, 1]
        noisy[:, 3:6] = gt.boxes[copy, 3:6] * rng.uniform(0.7, 1.3, (int(copy.sum()), 3))
        noisy[:, 7:9] = np.nan_to_num(noisy[:, 7:9])
        names = gt.names[copy].copy()
        relabel = rng.random(names.shape[0]) < 0.1
        names[relabel] = rng.choice(CLASSES, int(relabel.sum()))
        extra = int(rng.integers(0, 5))
        rows = np.concatenate([noisy, _random_rows(rng, extra)])
        rows = np.concatenate([rows, rows[::3]])
        names = np.concatenate([names, rng.choice(CLASSES, extra)])
        names = np.concatenate([names, names[::3]])
        n = rows.shape[0]
        scores = np.round(rng.random(n) * 8) / 8
        preds[f"sample-{s}"] = SampleBoxes(rows, names, scores, rng.choice(ATTRIBUTES, n), np.full(n, -1))
        gts[f"sample-{s}"] = gt
    return preds, gts


def _to_devkit(samples: dict[str, SampleBoxes], class_range: dict[str, float]) -> EvalBoxes:
    out = EvalBoxes()
    for token, sb in samples.items():
        kept = []
        for i in range(len(sb)):
            b = sb.boxes[i]
            box = DetectionBox(
                sample_token=token, translation=tuple(b[:3]), size=(b[4], b[3], b[5]),
                rotation=tuple(Quaternion(axis=[0, 0, 1], angle=b[6]).elements), velocity=tuple(b[7:9]),
                ego_translation=tuple(b[:3]), num_pts=int(sb.num_pts[i]), detection_name=str(sb.names[i]),
                detection_score=float(sb.scores[i]), attribute_name=str(sb.attributes[i]))
            if box.ego_dist < class_range[box.detection_name] and box.num_pts != 0:
                kept.append(box)
        out.add_boxes(token, kept)
    return out


def _devkit_metrics(preds: dict[str, SampleBoxes], gts: dict[str, SampleBoxes]) -> tuple[DevkitMetrics, dict]:
    content = nuscenes_metric_config().to_dict()
    content.pop("ego_origin")
    content.pop("distance_buckets")
    cfg = DetectionConfig.deserialize({**content, "dist_fcn": "center_distance"})
    gt_boxes, pred_boxes = _to_devkit(gts, cfg.class_range), _to_devkit(preds, cfg.class_range)
    metrics, curves = DevkitMetrics(cfg), {}
    for name in cfg.class_names:
        for th in cfg.dist_ths:
            curves[name, th] = devkit.accumulate(gt_boxes, pred_boxes, name, devkit_center_distance, th)
            metrics.add_label_ap(name, th, devkit.calc_ap(curves[name, th], cfg.min_recall, cfg.min_precision))
        for metric in TP_METRICS:
            skipped = metric in TP_METRICS_SKIPPED.get(name, ())
            tp = np.nan if skipped else devkit.calc_tp(curves[name, cfg.dist_th_tp], cfg.min_recall, metric)
            metrics.add_label_tp(name, metric, tp)
    return metrics, curves


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_every_metric_agrees_with_the_devkit(seed: int) -> None:
    preds, gts = _random_scene(np.random.default_rng(seed), num_samples=25)
    ours = evaluate_boxes(preds, gts, nuscenes_metric_config())
    theirs, their_curves = _devkit_metrics(preds, gts)

    assert ours.mean_ap == pytest.approx(theirs.mean_ap, abs=TOLERANCE)
    assert ours.nd_score == pytest.approx(theirs.nd_score, abs=TOLERANCE)
    assert ours.tp_errors == pytest.approx(theirs.tp_errors, abs=TOLERANCE)
    assert 0.0 < ours.mean_ap < 1.0
    for name in CLASSES:
        for th in ours.config.dist_ths:
            assert ours.label_aps[name][th] == pytest.approx(theirs.get_label_ap(name, th), abs=TOLERANCE)
            for field in ("precision", "confidence", "trans_err", "vel_err", "scale_err", "orient_err", "attr_err"):
                np.testing.assert_allclose(getattr(ours.curves[name][th], field),
                                           getattr(their_curves[name, th], field), atol=TOLERANCE, rtol=0)
        for metric in TP_METRICS:
            assert ours.label_tp_errors[name][metric] == pytest.approx(
                theirs.get_label_tp(name, metric), abs=TOLERANCE, nan_ok=True)
