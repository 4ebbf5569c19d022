"""Markdown and JSON reports of evaluation results: per backend, and backends side by side."""

from __future__ import annotations

import math
from typing import Any, Mapping

from centerpoint_deploy.evaluate.data_classes import TP_METRIC_SHORT_NAMES, TP_METRICS, DetectionMetrics

#: The summary metrics every report shows, in order, and the unit each is in (mAP and NDS are scores in [0, 1]).
SUMMARY_KEYS = ("mAP", "NDS", "mATE", "mASE", "mAOE", "mAVE", "mAAE")
SUMMARY_UNITS = {"mATE": "m", "mASE": "1-IoU", "mAOE": "rad", "mAVE": "m/s", "mAAE": "1-acc"}
_CLASS_TP_COLUMNS = {"trans_err": "ATE (m)", "scale_err": "ASE (1-IoU)", "orient_err": "AOE (rad)",
                     "vel_err": "AVE (m/s)", "attr_err": "AAE (1-acc)"}


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _signed(value: float | None) -> str:
    """``value`` with a sign and 4 decimals; a difference that rounds to zero is ``+0.0000``, never ``-0.0000``."""
    return "n/a" if value is None or math.isnan(value) else f"{round(value, 4) + 0.0:+.4f}"


def summary_header() -> list[str]:
    """Column titles of :data:`SUMMARY_KEYS` with their units, e.g. ``mATE (m)``."""
    return [f"{key} ({SUMMARY_UNITS[key]})" if key in SUMMARY_UNITS else key for key in SUMMARY_KEYS]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def metrics_markdown(title: str, metrics: DetectionMetrics, buckets: Mapping[str, DetectionMetrics]) -> str:
    """Summary, per-class table and distance-bucket table of one evaluation."""
    summary = metrics.summary()
    lines = [f"# {title}", "", *_table(summary_header(), [[_fmt(summary[k]) for k in SUMMARY_KEYS]]), ""]
    ths = metrics.config.dist_ths
    header = ["class", "#GT", "#pred", *[f"AP@{th:g}m" for th in ths], "AP", *_CLASS_TP_COLUMNS.values()]
    rows = []
    for name in metrics.config.class_names:
        rows.append([name, str(metrics.num_gt.get(name, "")), str(metrics.num_pred.get(name, "")),
                     *[_fmt(metrics.label_aps[name][th]) for th in ths], _fmt(metrics.mean_dist_aps[name]),
                     *[_fmt(metrics.label_tp_errors[name][m]) for m in _CLASS_TP_COLUMNS]])
    lines += ["## Per class", "", *_table(header, rows), ""]
    if buckets:
        rows = [[bucket, *[_fmt(m.summary()[k]) for k in SUMMARY_KEYS]] for bucket, m in buckets.items()]
        lines += ["## Distance buckets", "", *_table(["distance", *summary_header()], rows), ""]
    config = metrics.config
    lines += [f"Thresholds {list(config.dist_ths)} m, TP errors at {config.dist_th_tp:g} m, "
              f"min recall {config.min_recall:g}, min precision {config.min_precision:g}, "
              f"class ranges {config.class_range} m from ego origin {list(config.ego_origin)}.", ""]
    return "\n".join(lines)


def comparison(results: Mapping[str, tuple[DetectionMetrics, Mapping[str, DetectionMetrics]]]) -> dict[str, Any]:
    """Backends side by side; deltas are ``backend - reference`` (the first backend).

    Returns:
        ``{"reference": name, "backends": {name: {"summary", "summary_delta", "class_ap",
        "class_ap_delta", "class_tp_errors", "buckets": {bucket: {"summary", "summary_delta"}}}}}``
        (NaN as ``None``).
    """
    names = list(results)
    reference, ref_buckets = results[names[0]]
    ref_summary, ref_class_ap = reference.summary(), reference.mean_dist_aps

    def nan_free(d: Mapping[str, float]) -> dict[str, float | None]:
        return {k: None if math.isnan(v) else v for k, v in d.items()}

    out: dict[str, Any] = {"reference": names[0], "backends": {}}
    for name, (metrics, buckets) in results.items():
        summary, class_ap = metrics.summary(), metrics.mean_dist_aps
        out["backends"][name] = {
            "summary": nan_free(summary),
            "summary_delta": nan_free({k: summary[k] - ref_summary[k] for k in summary}),
            "class_ap": class_ap,
            "class_ap_delta": {c: class_ap[c] - ref_class_ap.get(c, math.nan) for c in class_ap},
            "class_tp_errors": {c: nan_free(e) for c, e in metrics.label_tp_errors.items()},
            "buckets": {
                bucket: {"summary": nan_free(m.summary()),
                         "summary_delta": nan_free({k: m.summary()[k] - ref_buckets[bucket].summary()[k]
                                                    for k in SUMMARY_KEYS} if bucket in ref_buckets else {})}
                for bucket, m in buckets.items()
            },
        }
    return out


def comparison_markdown(table: Mapping[str, Any]) -> str:
    """Markdown of :func:`comparison`: summaries, per-class AP and bucket mAP / NDS with deltas."""
    reference, backends = table["reference"], table["backends"]
    lines = [f"# Backend comparison (deltas vs {reference})", ""]
    rows = []
    for name, entry in backends.items():
        rows.append([name, *[_fmt(entry["summary"][k]) for k in SUMMARY_KEYS],
                     _signed(entry["summary_delta"]["mAP"]), _signed(entry["summary_delta"]["NDS"])])
    lines += _table(["backend", *summary_header(), "ΔmAP", "ΔNDS"], rows) + [""]

    classes = list(next(iter(backends.values()))["class_ap"])
    rows = [[c, *[f"{_fmt(e['class_ap'][c])} ({_signed(e['class_ap_delta'][c])})" for e in backends.values()]]
            for c in classes]
    lines += ["## AP per class (Δ vs reference)", "", *_table(["class", *backends], rows), ""]

    buckets = list(next(iter(backends.values()))["buckets"])
    if buckets:
        rows = []
        for bucket in buckets:
            cells = []
            for entry in backends.values():
                b = entry["buckets"].get(bucket)
                cells.append("n/a" if b is None else f"{_fmt(b['summary']['mAP'])} / {_fmt(b['summary']['NDS'])} "
                             f"({_signed(b['summary_delta'].get('mAP'))} / {_signed(b['summary_delta'].get('NDS'))})")
            rows.append([bucket, *cells])
        lines += ["## mAP / NDS per distance bucket (Δ vs reference)", "", *_table(["distance", *backends], rows), ""]
    tp_header = [TP_METRIC_SHORT_NAMES[m] for m in TP_METRICS]
    lines += [f"TP errors: {', '.join(tp_header)} (lower is better); mAP and NDS higher is better.", ""]
    return "\n".join(lines)
