"""Run several detectors (backends) over a dataset and evaluate them side by side.

Output folder::

    out_dir/
      ground_truth.json                the evaluated GT (box file, see evaluate.io)
      <backend>/predictions.json       cached predictions (reused when the cache key matches)
      <backend>/metrics.json           DetectionMetrics.to_dict() + distance buckets
      <backend>/metrics.md             per class and overall, distance buckets
      <backend>/pr_curves.png          precision-recall per class and threshold
      comparison.json, comparison.md   mAP / NDS / TP errors and per-class AP, deltas vs the first backend
      bev/<index>_<token>.png          bird's-eye views of the frames asked for (outputs.safe_name)

A backend's predictions are reused when its ``predictions.json`` carries the same cache key:
a hash of the backend name, the model config, the evaluated frames (tokens and point files)
and the caller's fingerprint of the weights (:func:`fingerprint_files` of a checkpoint or a
deploy folder). Changing only the metric settings therefore re-scores without re-running.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from centerpoint_deploy.data.dataset import FrameDataset
from centerpoint_deploy.detector import Detector
from centerpoint_deploy.errors import EvaluationError
from centerpoint_deploy.evaluate.data_classes import DetectionMetrics, MetricConfig, SampleBoxes
from centerpoint_deploy.evaluate.io import load_boxes, save_boxes
from centerpoint_deploy.evaluate.metrics import evaluate_boxes, evaluate_distance_buckets
from centerpoint_deploy.evaluate.render import render_bev, render_pr_curves
from centerpoint_deploy.evaluate.report import comparison, comparison_markdown, metrics_markdown
from centerpoint_deploy.outputs import inside, safe_name

#: Predicted boxes drawn in bird's-eye views score at least this much.
BEV_MIN_SCORE = 0.3
_BACKEND_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def fingerprint_files(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes, or of every file under a folder (relative names and bytes,
    sorted by name)."""
    path = Path(path)
    if not path.exists():
        raise EvaluationError(f"cannot fingerprint '{path}': it does not exist")
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(str(file.relative_to(path) if file != path else file.name).encode())
        with file.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _frame_indices(dataset: FrameDataset, frames: Sequence[int] | None) -> list[int]:
    if frames is None:
        return list(range(len(dataset)))
    indices = [int(i) for i in frames]
    bad = [i for i in indices if not 0 <= i < len(dataset)]
    if bad:
        raise EvaluationError(f"frame indices {bad[:5]} are outside the dataset's {len(dataset)} frames")
    if len(set(indices)) != len(indices):
        raise EvaluationError("frame indices must not repeat")
    return indices


def ground_truth_boxes(dataset: FrameDataset, indices: Sequence[int]) -> dict[str, SampleBoxes]:
    """Sample token -> GT :class:`SampleBoxes` of the frames at ``indices`` (no point file is read)."""
    out: dict[str, SampleBoxes] = {}
    for i in indices:
        record = dataset.records[i]
        if record.gt is None:
            raise EvaluationError(f"frame {i} ('{record.token}') has no annotations; evaluation needs ground truth")
        if record.token in out:
            raise EvaluationError(f"sample token '{record.token}' appears twice in the dataset")
        gt = record.gt
        out[record.token] = SampleBoxes.from_ground_truth(gt.boxes, gt.labels, gt.class_names, gt.num_lidar_pts,
                                                          gt.attributes)
    return out


def _cache_key(name: str, detector: Detector, dataset: FrameDataset, indices: Sequence[int], fingerprint: str) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([name, repr(detector.config), fingerprint]).encode())
    for i in indices:
        digest.update(f"{dataset.records[i].token}\0{dataset.records[i].lidar_path}\n".encode())
    return digest.hexdigest()


def _cached_predictions(path: Path, key: str, tokens: Sequence[str]) -> dict[str, SampleBoxes] | None:
    """The predictions in ``path`` if it holds exactly ``tokens`` under cache ``key``; a missing,
    unreadable or stale file gives None (the backend runs again and overwrites it)."""
    if not path.is_file():
        return None
    try:
        predictions, meta = load_boxes(path, "predictions")
    except EvaluationError:
        return None
    return predictions if meta.get("cache_key") == key and list(predictions) == list(tokens) else None


def _run_detectors(dataset: FrameDataset, indices: Sequence[int], detectors: Mapping[str, Detector],
                   console: Console) -> dict[str, dict[str, SampleBoxes]]:
    """Each detector's predictions per sample token; every frame's points are read once."""
    results: dict[str, dict[str, SampleBoxes]] = {name: {} for name in detectors}
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress, torch.inference_mode():
        task = progress.add_task(f"detect ({', '.join(detectors)})", total=len(indices))
        for i in indices:
            frame = dataset[i]
            for name, detector in detectors.items():
                use_dim = list(detector.config.points.use_dim)
                points = torch.from_numpy(np.ascontiguousarray(frame.points[:, use_dim], dtype=np.float32))
                detections = detector(points)
                results[name][frame.token] = SampleBoxes.from_detections(detections, detector.config.class_names)
            progress.advance(task)
    return results


def evaluate_backends(dataset: FrameDataset, detectors: Mapping[str, Detector], out_dir: str | Path,
                      metric_config: MetricConfig, *, cache: bool = True, frames: Sequence[int] | None = None,
                      fingerprints: Mapping[str, str] | None = None, render_frames: Sequence[int] = (),
                      plots: bool = True, console: Console | None = None) -> dict[str, DetectionMetrics]:
    """Run every detector over the frames, evaluate, and write reports (layout in the module doc).

    Args:
        dataset: frames with ground truth (``open_dataset(...)``).
        detectors: backend name -> :class:`Detector`; the first is the comparison reference.
            Names become folder names (letters, digits, ``_ . -``).
        out_dir: output folder (created).
        metric_config: metric settings (its distance buckets are reported too).
        cache: reuse ``<backend>/predictions.json`` when its cache key matches.
        frames: dataset indices to evaluate (default: all).
        fingerprints: backend name -> fingerprint of its weights (e.g. :func:`fingerprint_files`
            of the checkpoint or deploy folder); part of the cache key. Without one, a
            backend's cache only matches the same name, config and frames.
        render_frames: dataset indices (among ``frames``) to draw as bird's-eye views.
        plots: write ``pr_curves.png`` per backend (the slowest part of a re-scoring).
        console: where the progress bar goes (default: stderr).

    Returns:
        backend name -> metrics over all evaluated frames (buckets are in ``metrics.json``).
    """
    if not detectors:
        raise EvaluationError("evaluate_backends needs at least one detector")
    bad_names = [n for n in detectors if not _BACKEND_NAME.match(n)]
    if bad_names:
        raise EvaluationError(f"backend names {bad_names} are not usable as folder names; "
                              "use letters, digits, '_', '.', '-'")
    console = console or Console(stderr=True)
    out_dir = Path(out_dir)
    indices = _frame_indices(dataset, frames)
    outside = sorted(set(render_frames) - set(indices))
    if outside:
        raise EvaluationError(f"render_frames {outside[:5]} are not among the evaluated frames")
    gts = ground_truth_boxes(dataset, indices)
    tokens = list(gts)
    save_boxes(out_dir / "ground_truth.json", gts, "ground_truth", meta={"class_names": list(dataset.class_names)})

    predictions: dict[str, dict[str, SampleBoxes]] = {}
    keys = {name: _cache_key(name, det, dataset, indices, (fingerprints or {}).get(name, ""))
            for name, det in detectors.items()}
    for name in detectors:
        cached = _cached_predictions(out_dir / name / "predictions.json", keys[name], tokens) if cache else None
        if cached is not None:
            console.print(f"{name}: reusing cached predictions ({out_dir / name / 'predictions.json'})", highlight=False)
            predictions[name] = cached
    to_run = {name: det for name, det in detectors.items() if name not in predictions}
    if to_run:
        fresh = _run_detectors(dataset, indices, to_run, console)
        for name, samples in fresh.items():
            save_boxes(out_dir / name / "predictions.json", samples, "predictions",
                       meta={"backend": name, "cache_key": keys[name], "class_names": list(to_run[name].config.class_names)})
            predictions[name] = samples

    results: dict[str, DetectionMetrics] = {}
    side_by_side = {}
    for name in detectors:
        metrics = evaluate_boxes(predictions[name], gts, metric_config)
        buckets = evaluate_distance_buckets(predictions[name], gts, metric_config)
        write_metrics(out_dir / name, name, metrics, buckets, plots=plots)
        results[name] = metrics
        side_by_side[name] = (metrics, buckets)
    table = comparison(side_by_side)
    (out_dir / "comparison.json").write_text(json.dumps(table, indent=1, allow_nan=False))
    (out_dir / "comparison.md").write_text(comparison_markdown(table))

    extent = max(metric_config.class_range.values()) + 5.0  # the evaluated region and a margin
    for i in render_frames:
        frame = dataset[i]
        shown = {name: p[frame.token].boxes[p[frame.token].scores >= BEV_MIN_SCORE] for name, p in predictions.items()}
        png = inside(out_dir, out_dir / "bev" / f"{safe_name(f'{i:05d}_{frame.token}')}.png")
        render_bev(frame.points, gts[frame.token].boxes, shown, png, gt_num_points=gts[frame.token].num_pts,
                   extent=extent, title=f"frame {i} ({frame.token}), predictions with score >= {BEV_MIN_SCORE}")
    return results


def write_metrics(folder: str | Path, title: str, metrics: DetectionMetrics,
                  buckets: Mapping[str, DetectionMetrics], *, plots: bool = True) -> None:
    """``metrics.json`` (with bucket summaries), ``metrics.md`` and (with ``plots``) ``pr_curves.png``
    in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    content = metrics.to_dict()
    content["distance_buckets"] = {b: m.to_dict(include_curves=False) for b, m in buckets.items()}
    (folder / "metrics.json").write_text(json.dumps(content, allow_nan=False))
    (folder / "metrics.md").write_text(metrics_markdown(title, metrics, buckets))
    if plots:
        render_pr_curves(metrics, folder / "pr_curves.png", title=title)
