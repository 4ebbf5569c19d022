"""How much the Autoware node's non-deterministic voxelization moves boxes and mAP.

The node shuffles the points with a time-seeded offset per frame, so which 32 points a crowded
pillar keeps (and, past ``max_voxel_size``, which pillars) changes run to run. Here the same
detector is evaluated with ``voxelization.mode: autoware`` under a few shuffle seeds (one
Detector per seed, sharing the backends); every seed gets both post-processing views. The
spread of mAP / NDS over the seeds and the box movement against the first seed (same-class
nearest-centre matching) go to ``voxelization_spread.json`` and ``.md``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from centerpoint_deploy.data.dataset import FrameDataset
from centerpoint_deploy.detector import Detector
from centerpoint_deploy.errors import EvaluationError
from centerpoint_deploy.evaluate.data_classes import MetricConfig, SampleBoxes
from centerpoint_deploy.evaluate.io import load_boxes
from centerpoint_deploy.evaluate.runner import evaluate_backends
from centerpoint_deploy.outputs import write_text
from centerpoint_deploy.structures import Detections
from centerpoint_deploy.verify.boxes import match_boxes

#: BEV centre distance (m) within which a box of another seed counts as the same box.
MATCH_GATE = 2.0


def seed_detectors(detector: Detector, seeds: Sequence[int]) -> dict[str, Detector]:
    """``{"seed-<s>": detector}``: ``detector``'s backends with the node's voxelization, one shuffle seed each."""
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise EvaluationError(f"the voxelization spread needs at least two distinct seeds, got {list(seeds)}")
    config = dataclasses.replace(detector.config,
                                 voxelization=dataclasses.replace(detector.config.voxelization, mode="autoware"))
    return {f"seed-{seed}": detector.with_config(config, voxel_seed=seed) for seed in seeds}


def _as_detections(samples: SampleBoxes, class_names: Sequence[str]) -> Detections:
    index = {name: i for i, name in enumerate(class_names)}
    labels = torch.tensor([index.get(str(n), -1) for n in samples.names], dtype=torch.int64)
    return Detections(torch.from_numpy(samples.boxes), torch.from_numpy(samples.scores), labels)


def box_movement(reference: Mapping[str, SampleBoxes], other: Mapping[str, SampleBoxes],
                 class_names: Sequence[str]) -> dict[str, float]:
    """Boxes of ``other`` against ``reference`` over the same frames.

    Returns:
        ``matched_share`` (matched pairs over the larger box count, summed over frames),
        ``center_shift_mean`` / ``center_shift_p95`` (m, BEV, matched pairs) and
        ``score_change_mean`` (absolute).
    """
    shifts, score_changes, matched, larger = [], [], 0, 0
    for token, ref in reference.items():
        a, b = _as_detections(ref, class_names), _as_detections(other[token], class_names)
        ri, ti = match_boxes(a, b, MATCH_GATE)
        matched += len(ri)
        larger += max(len(a), len(b))
        shifts.append(np.linalg.norm(ref.boxes[ri, :2] - other[token].boxes[ti, :2], axis=1))
        score_changes.append(np.abs(ref.scores[ri] - other[token].scores[ti]))
    shift = np.concatenate(shifts) if shifts else np.zeros(0)
    change = np.concatenate(score_changes) if score_changes else np.zeros(0)
    return {"matched_share": matched / larger if larger else 1.0,
            "center_shift_mean": float(shift.mean()) if shift.size else 0.0,
            "center_shift_p95": float(np.percentile(shift, 95)) if shift.size else 0.0,
            "score_change_mean": float(change.mean()) if change.size else 0.0}


def voxelization_spread(dataset: FrameDataset, detector: Detector, out_dir: str | Path, metric_config: MetricConfig,
                        seeds: Sequence[int] = (0, 1, 2), **evaluate_options: Any) -> dict[str, Any]:
    """Evaluate ``detector`` with the node's voxelization under each seed and summarise the spread.

    Args:
        evaluate_options: passed to :func:`~centerpoint_deploy.evaluate.runner.evaluate_backends`
            (``frames``, ``fingerprints`` keyed by ``seed-<s>``, ``cache``, ``workers``, ...).

    Returns:
        ``{"seeds", "views": {mode: {"mAP": {...}, "NDS": {...}, "movement": {seed: {...}}}}}``
        with per-seed values, mean, std, min, max and range; also written to
        ``out_dir/voxelization_spread.json`` and ``.md`` (on a ``torchrun`` rank other than 0,
        nothing is written and ``views`` is empty).
    """
    detectors = seed_detectors(detector, seeds)
    evaluate_options.setdefault("plots", False)
    results = evaluate_backends(dataset, detectors, out_dir, metric_config, **evaluate_options)
    out_dir = Path(out_dir)
    names = list(detectors)
    summary: dict[str, Any] = {"seeds": list(seeds), "views": {}}
    if not results:  # a torchrun rank other than 0: rank 0 scores and writes
        return summary
    for suffix, mode in (("", "mmdet3d"), ("@autoware", "autoware")):
        entries = [name + suffix for name in names]
        if any(entry not in results for entry in entries):
            continue
        view: dict[str, Any] = {key: _stats({e: results[e].summary()[key] for e in entries}) for key in ("mAP", "NDS")}
        reference, _ = load_boxes(out_dir / entries[0] / "predictions.json", "predictions")
        view["movement"] = {}
        for entry in entries[1:]:
            other, _ = load_boxes(out_dir / entry / "predictions.json", "predictions")
            view["movement"][entry.removesuffix(suffix)] = box_movement(reference, other, detector.config.class_names)
        summary["views"][mode] = view
    write_text(out_dir / "voxelization_spread.json", json.dumps(summary, indent=1, allow_nan=False))
    write_text(out_dir / "voxelization_spread.md", spread_markdown(summary))
    return summary


def _stats(values: Mapping[str, float]) -> dict[str, Any]:
    array = np.array(list(values.values()), dtype=np.float64)
    return {"per_seed": dict(values), "mean": float(array.mean()), "std": float(array.std()),
            "min": float(array.min()), "max": float(array.max()), "range": float(array.max() - array.min())}


def spread_markdown(summary: Mapping[str, Any]) -> str:
    """Markdown of :func:`voxelization_spread`'s summary."""
    lines = [f"# Node voxelization: spread over shuffle seeds {summary['seeds']}", ""]
    for mode, view in summary["views"].items():
        lines += [f"## {mode} post-processing", "", "| metric | mean | std | min | max | range |", "|---|---|---|---|---|---|"]
        for key in ("mAP", "NDS"):
            s = view[key]
            lines.append(f"| {key} | {s['mean']:.4f} | {s['std']:.4f} | {s['min']:.4f} | {s['max']:.4f} | {s['range']:.4f} |")
        lines += ["", f"Boxes against seed {summary['seeds'][0]}:", "",
                  "| seed | matched share | centre shift mean (m) | p95 (m) | score change mean |", "|---|---|---|---|---|"]
        for seed, m in view["movement"].items():
            lines.append(f"| {seed} | {m['matched_share']:.4f} | {m['center_shift_mean']:.4f} | "
                         f"{m['center_shift_p95']:.4f} | {m['score_change_mean']:.4f} |")
        lines.append("")
    return "\n".join(lines)
