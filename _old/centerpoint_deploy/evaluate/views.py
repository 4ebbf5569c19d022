"""Both post-processing views of one backend side by side: mmdet3d's and the Autoware node's.

"What training reports" (mmdet3d decode) against "what the car outputs" (the node's decode and
NMS), scored on the same head outputs, per class and per distance bucket, with the delta
``autoware - mmdet3d``.
"""

from __future__ import annotations

from typing import Any, Mapping

from centerpoint_deploy.evaluate.data_classes import DetectionMetrics
from centerpoint_deploy.evaluate.report import comparison
from centerpoint_deploy.postprocess.modes import TITLES

#: A backend's metrics and distance-bucket metrics.
Scored = tuple[DetectionMetrics, Mapping[str, DetectionMetrics]]


def entry_name(backend: str, mode: str, *, first: bool = False) -> str:
    """The report entry (and folder) of a backend's view: the backend's name for its first view, else ``backend@mode``."""
    return backend if first else f"{backend}@{mode}"


def views_table(scored: Mapping[str, Mapping[str, Scored]]) -> dict[str, Any]:
    """Per backend, its views side by side (:func:`~centerpoint_deploy.evaluate.report.comparison`,
    the first view as reference).

    Args:
        scored: backend -> view mode -> (metrics, bucket metrics), reference view first.

    Returns:
        ``{"titles": {mode: title}, "backends": {backend: comparison table keyed by mode}}``;
        a backend with one view has no delta to show and is left out.
    """
    tables = {backend: comparison(views) for backend, views in scored.items() if len(views) > 1}
    return {"titles": dict(TITLES), "backends": tables}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.4f}"


def views_markdown(table: Mapping[str, Any]) -> str:
    """Markdown of :func:`views_table`: mAP / NDS, AP per class and per distance bucket, per view, with deltas."""
    titles = table["titles"]
    lines = ["# Post-processing views: what training reports vs what the car outputs", ""]
    if not table["backends"]:
        return "\n".join(lines + ["Only one post-processing view was evaluated (the node reads one head task).", ""])
    for backend, comp in table["backends"].items():
        reference = comp["reference"]
        views = comp["backends"]
        other = [mode for mode in views if mode != reference]
        header = ["", *[f"{mode} ({titles.get(mode, mode)})" for mode in views], *[f"Δ {m}" for m in other]]
        lines += [f"## {backend}", ""]
        rows = []
        for key in ("mAP", "NDS"):
            rows.append([key, *[_fmt(v["summary"][key]) for v in views.values()],
                         *[_signed(views[m]["summary_delta"][key]) for m in other]])
        for cls in views[reference]["class_ap"]:
            rows.append([f"AP {cls}", *[_fmt(v["class_ap"][cls]) for v in views.values()],
                         *[_signed(views[m]["class_ap_delta"][cls]) for m in other]])
        for bucket in views[reference]["buckets"]:
            for key in ("mAP", "NDS"):
                rows.append([f"{key} {bucket}", *[_fmt(v["buckets"][bucket]["summary"][key]) for v in views.values()],
                             *[_signed(views[m]["buckets"][bucket]["summary_delta"].get(key)) for m in other]])
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                  *["| " + " | ".join(r) + " |" for r in rows], ""]
    lines += ["Δ = view − mmdet3d, both from the same network outputs (only the post-processing differs).", ""]
    return "\n".join(lines)
