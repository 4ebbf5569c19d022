"""Run several detectors (backends) over a dataset and evaluate them side by side.

Output folder::

    out_dir/
      ground_truth.json                the evaluated GT (box file, see evaluate.io)
      <backend>/predictions.json       cached predictions (reused when the cache key matches)
      <backend>/metrics.json           DetectionMetrics.to_dict() + distance buckets
      <backend>/metrics.md             per class and overall, distance buckets
      <backend>/pr_curves.png          precision-recall per class and threshold
      comparison.json, comparison.md   mAP / NDS / TP errors and per-class AP, deltas vs the first backend,
                                       and the loop's throughput (frames/s, read vs. compute time)
      <backend>@autoware/...           the same for the Autoware node's post-processing of the same head outputs
      views.json, views.md             per backend: mmdet3d vs the node's post-processing, per class and
                                       distance bucket, with the delta (see ``evaluate.views``)
      bev/<index>_<token>.png          bird's-eye views of the frames asked for (outputs.safe_name)

Every backend's networks run once per frame (or per batch of ``batch_size`` frames); each
post-processing view (:func:`~centerpoint_deploy.postprocess.modes.default_views`: mmdet3d's,
"what training reports", and the node's, "what the car outputs") is applied to the same head
outputs, and each view is scored as its own entry (``<backend>`` and ``<backend>@autoware``).
A batch's boxes are made and converted to the host after the next batch was launched
(:func:`~centerpoint_deploy.views.launch_views`,
:class:`~centerpoint_deploy.evaluate.data_classes.HostDetections`): with a pipeline graph the
device runs the next batch while the host reads this one's boxes (the node's kept ones too).

A backend's predictions are reused when its ``predictions.json`` carries the same cache key:
a hash of what the predictions are made from, by content (the point files' bytes, poses,
calibration, the detector's settings, the weights' fingerprint; see
:mod:`~centerpoint_deploy.evaluate.cache_key`). Changing only the metric settings therefore
re-scores without re-running.

Frames are read ahead by worker processes (:mod:`centerpoint_deploy.data.loader`). Under
``torchrun`` each rank runs its share of the frames (:mod:`~centerpoint_deploy.evaluate.distributed`);
rank 0 gathers the predictions, scores them and writes every file.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import Tensor
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from centerpoint_deploy.data.dataset import FrameDataset
from centerpoint_deploy.data.loader import FrameBatch, FrameLoader
from centerpoint_deploy.detector import Detector
from centerpoint_deploy.stages import Pipeline
from centerpoint_deploy.static_pipeline import StaticPipeline
from centerpoint_deploy.errors import EvaluationError
from centerpoint_deploy.evaluate.cache_key import (fingerprint_files, frame_files, inputs_digest, prediction_cache_key,
                                                   stamp_files)
from centerpoint_deploy.evaluate.data_classes import DetectionMetrics, HostDetections, MetricConfig, SampleBoxes
from centerpoint_deploy.evaluate.io import load_boxes, save_boxes
from centerpoint_deploy.evaluate.metrics import evaluate_boxes, evaluate_distance_buckets
from centerpoint_deploy.evaluate.distributed import RankGroup
from centerpoint_deploy.evaluate.report import comparison, comparison_markdown, metrics_markdown
from centerpoint_deploy.evaluate.views import entry_name, views_markdown, views_table
from centerpoint_deploy.outputs import inside, safe_name, write_text
from centerpoint_deploy.postprocess.modes import PostprocessView, default_views
from centerpoint_deploy.views import PendingView, launch_views
from centerpoint_deploy.evaluate.throughput import RankTiming, Throughput, process_age

__all__ = ["evaluate_backends", "fingerprint_files", "ground_truth_boxes", "write_metrics"]

#: Predicted boxes drawn in bird's-eye views score at least this much.
BEV_MIN_SCORE = 0.3
_BACKEND_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


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


def _columns(detectors: Mapping[str, Pipeline]) -> list[int] | None:
    """The point columns every detector reads, or None (read all, select per detector) when they differ."""
    wanted = {tuple(d.config.points.use_dim) for d in detectors.values()}
    return list(wanted.pop()) if len(wanted) == 1 else None


def _view_key(view: PostprocessView) -> str:
    """What a view's predictions depend on besides the detector (its mode and parameters)."""
    return json.dumps([view.name, view.mode, repr(getattr(view.postprocess, "params", None)),
                       getattr(view.postprocess, "rot_y_axis_reference", None)])


@dataclass(frozen=True)
class _Launched:
    """One detector view's boxes of one batch, on their way to the host: made, and copied there
    without waiting (``HostDetections``), or still to be made (``PendingView``, e.g. a pipeline
    graph's boxes and the node's kept boxes, read after the next batch was queued)."""

    backend: str
    view: str
    tokens: tuple[str, ...]
    boxes: HostDetections | PendingView

    def sample_boxes(self, class_names: Sequence[str]) -> list[SampleBoxes]:
        if isinstance(self.boxes, HostDetections):
            return self.boxes.sample_boxes(class_names)
        # a pending view's boxes are made on the host: no packing, no copy
        return [SampleBoxes.from_detections(detections, class_names) for detections in self.boxes.result()]


def _clouds(batch: FrameBatch, detector: Pipeline, columns: list[int] | None) -> list[Tensor]:
    """The batch's clouds with ``detector``'s columns (already selected when every detector reads the same)."""
    if columns is not None:
        return batch.clouds
    use_dim = list(detector.config.points.use_dim)
    return [cloud[:, use_dim].contiguous() for cloud in batch.clouds]


def _launch(batch: FrameBatch, detectors: Mapping[str, Pipeline], views: Mapping[str, Sequence[PostprocessView]],
            columns: list[int] | None, timing: RankTiming) -> list[_Launched]:
    """Every detector and view on the batch, queued: boxes already made are copied towards the host
    without waiting, the others are made in :func:`_collect`."""
    tokens = tuple(frame.token for frame in batch.frames)
    launched = []
    for name, detector in detectors.items():
        begin = time.perf_counter()
        by_view = launch_views(detector, _clouds(batch, detector, columns), views[name])
        launched += [_Launched(name, view, tokens, pending if pending.ready is None else HostDetections(pending.ready))
                     for view, pending in by_view.items()]
        timing.compute[name] = timing.compute.get(name, 0.0) + time.perf_counter() - begin
    return launched


def _collect(launched: Sequence[_Launched], detectors: Mapping[str, Pipeline],
             results: dict[tuple[str, str], dict[str, SampleBoxes]], timing: RankTiming) -> None:
    """The launched boxes as host :class:`SampleBoxes` into ``results`` (waits for their copies; counted
    as the detector's compute: its boxes are on the host only now)."""
    for item in launched:
        begin = time.perf_counter()
        boxes = item.sample_boxes(detectors[item.backend].config.class_names)
        results[(item.backend, item.view)].update(zip(item.tokens, boxes))
        timing.compute[item.backend] += time.perf_counter() - begin


def _run_detectors(dataset: FrameDataset, indices: Sequence[int], detectors: Mapping[str, Pipeline],
                   views: Mapping[str, Sequence[PostprocessView]], console: Console, group: RankGroup,
                   workers: int | None, batch_size: int = 1
                   ) -> tuple[dict[tuple[str, str], dict[str, SampleBoxes]], RankTiming]:
    """Each detector's predictions per view name and sample token of the frames at ``indices``
    (read once each, ahead, by ``workers`` reader processes), and how long it took.

    ``batch_size`` frames at a time go through each detector's networks once; its views
    post-process the same head outputs. A batch's boxes become host :class:`SampleBoxes` only
    after the next batch was launched, so that on a GPU their copy overlaps that work."""
    results: dict[tuple[str, str], dict[str, SampleBoxes]] = {(name, v.name): {} for name in detectors
                                                              for v in views[name]}
    columns = _columns(detectors)
    devices = {torch.device(getattr(d, "device", "cpu")) for d in detectors.values()}
    device = devices.pop() if len(devices) == 1 else torch.device("cpu")
    loader = FrameLoader(dataset, indices, columns, workers=workers, batch_size=batch_size, device=device)
    timing = RankTiming(group.rank, len(indices), loader.workers, startup=process_age())
    bar = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    rank = f" rank {group.rank}/{group.world_size}" if group.distributed else ""
    start = time.perf_counter()
    with Progress(*bar, console=console, transient=False, disable=not group.is_main) as progress, \
            torch.inference_mode():
        task = progress.add_task(f"detect ({', '.join(detectors)}){rank}", total=len(indices))
        batches = iter(loader)
        previous: list[_Launched] = []
        while True:
            asked = time.perf_counter()
            batch = next(batches, None)
            timing.wait += time.perf_counter() - asked
            if batch is None:
                break
            group.check()  # another rank failed: stop here rather than finish this share
            timing.read += sum(frame.read_seconds for frame in batch.frames)
            launched = _launch(batch, detectors, views, columns, timing)
            _collect(previous, detectors, results, timing)
            previous = launched
            progress.advance(task, len(batch.frames))
        _collect(previous, detectors, results, timing)
    timing.wall = time.perf_counter() - start
    return results, timing


def _batched_inputs(inputs: str, batch_size: int, world_size: int) -> str:
    """The inputs part of the cache key with the batching: B > 1 runs the networks on stacked inputs,
    whose floats may differ in the last bit from B = 1 (convolution kernels are chosen by shape),
    and the batches of a rank's share depend on the number of ranks. B = 1 keeps the plain key."""
    return inputs if batch_size == 1 else f"{inputs} batch {batch_size} of {world_size} rank(s)"


def evaluate_backends(dataset: FrameDataset, detectors: Mapping[str, Pipeline], out_dir: str | Path,
                      metric_config: MetricConfig, *, cache: bool = True, frames: Sequence[int] | None = None,
                      fingerprints: Mapping[str, str] | None = None, render_frames: Sequence[int] = (),
                      plots: bool = True, console: Console | None = None, workers: int | None = None,
                      group: RankGroup | None = None,
                      views: Mapping[str, Sequence[PostprocessView]] | None = None,
                      calibration_floor: float | None = None, batch_size: int = 1) -> dict[str, DetectionMetrics]:
    """Run every detector over the frames, evaluate, and write reports (layout in the module doc).

    Args:
        dataset: frames with ground truth (``open_dataset(...)``).
        detectors: backend name -> :class:`Pipeline`; the first is the comparison reference.
            Names become folder names (letters, digits, ``_ . -``).
        out_dir: output folder (created).
        metric_config: metric settings (its distance buckets are reported too).
        cache: reuse ``<backend>/predictions.json`` when its cache key matches.
        frames: dataset indices to evaluate (default: all).
        fingerprints: backend name -> fingerprint of its weights (e.g. :func:`fingerprint_files`
            of the checkpoint or deploy folder); part of the cache key. Without one, a
            backend's cache key covers the inputs, the detector and the code but not the weights.
        render_frames: dataset indices (among ``frames``) to draw as bird's-eye views.
        plots: write ``pr_curves.png`` per backend (the slowest part of a re-scoring).
        console: where the progress bar goes (default: stderr).
        workers: reader processes (default :func:`~centerpoint_deploy.data.loader.default_workers`).
        group: this process's rank (default: a single process); every rank of a ``torchrun``
            launch calls this with the same arguments.
        views: backend name -> its post-processing views, the first one scored under the
            backend's own name (default: :func:`default_views` of its config and its bundle's
            node parameters, mmdet3d first; a stand-in callable that is not a detector has its
            own output only).
        calibration_floor: with the default views, also each detector's
            :func:`~centerpoint_deploy.postprocess.modes.calibration_view` at this floor
            (``<backend>@calibration``, what ``calibrate-thresholds`` reads).
        batch_size: frames per network run (the last batch of a rank may be smaller). Boxes
            equal batch 1's up to the networks' floating-point results, which may change in the
            last bit with the batch's shape; B > 1 is therefore part of the cache key.

    Returns:
        entry name (``<backend>`` for the first view, ``<backend>@<view>`` for the others) ->
        metrics over all evaluated frames (buckets are in ``metrics.json``); empty on ranks
        other than 0.
    """
    if not detectors:
        raise EvaluationError("evaluate_backends needs at least one detector")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise EvaluationError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    bad_names = [n for n in detectors if not _BACKEND_NAME.match(n)]
    if bad_names:
        raise EvaluationError(f"backend names {bad_names} are not usable as folder names; "
                              "use letters, digits, '_', '.', '-'")
    group = group or RankGroup()
    console = console or Console(stderr=True)
    out_dir = Path(out_dir)
    indices = _frame_indices(dataset, frames)
    outside = sorted(set(render_frames) - set(indices))
    if outside:
        raise EvaluationError(f"render_frames {outside[:5]} are not among the evaluated frames")
    shard = group.shard(indices)

    stamps = {}
    for part in group.exchange(stamp_files(frame_files(dataset, shard))):  # each rank hashes its own frames' files
        stamps.update(part)
    inputs = _batched_inputs(inputs_digest(dataset, indices, stamps), batch_size, group.world_size)
    if views is None:  # both views for real detectors; a stand-in callable has only its own output
        views = {name: default_views(det.config, params=det.node_params, calibration_floor=calibration_floor)
                 if isinstance(det, (Detector, StaticPipeline)) else default_views(det.config)[:1]
                 for name, det in detectors.items()}
    entries = {entry_name(name, v.name, first=i == 0): (name, v)  # the first view keeps the backend's name
               for name in detectors for i, v in enumerate(views[name])}
    entry_of = {(name, v.name): entry for entry, (name, v) in entries.items()}
    keys = {entry: prediction_cache_key(f"{entry} {_view_key(view)}", detectors[name], inputs,
                                        (fingerprints or {}).get(name, ""))
            for entry, (name, view) in entries.items()}
    predictions: dict[str, dict[str, SampleBoxes]] = {}
    gts: dict[str, SampleBoxes] = {}
    if group.is_main:
        gts = ground_truth_boxes(dataset, indices)
        save_boxes(out_dir / "ground_truth.json", gts, "ground_truth", meta={"class_names": list(dataset.class_names)})
        for entry in entries:
            found = _cached_predictions(out_dir / entry / "predictions.json", keys[entry], list(gts)) if cache else None
            if found is not None:
                console.print(f"{entry}: reusing cached predictions ({out_dir / entry / 'predictions.json'})",
                              highlight=False)
                predictions[entry] = found
    cached = group.exchange(sorted(predictions) if group.is_main else None)[0]
    to_run = {name: det for name, det in detectors.items()
              if any(entry not in cached for entry, (owner, _) in entries.items() if owner == name)}
    fresh, timing = _run_detectors(dataset, shard, to_run, {name: views[name] for name in to_run}, console, group,
                                   workers, batch_size) if to_run else ({}, RankTiming(group.rank, 0, 0))
    gathered = group.exchange((fresh, timing))
    if not group.is_main:
        return {}
    throughput = Throughput([t for _, t in gathered])
    for name, det in to_run.items():
        for view in views[name]:
            entry = entry_of[(name, view.name)]
            samples = {token: boxes for part, _ in gathered for token, boxes in part[(name, view.name)].items()}
            save_boxes(out_dir / entry / "predictions.json", samples, "predictions",
                       meta={"backend": name, "postprocess": view.mode, "view": view.name, "cache_key": keys[entry],
                             "class_names": list(det.config.class_names)})
            predictions[entry] = samples

    results: dict[str, DetectionMetrics] = {}
    side_by_side = {}
    for name in entries:
        metrics = evaluate_boxes(predictions[name], gts, metric_config)
        buckets = evaluate_distance_buckets(predictions[name], gts, metric_config)
        write_metrics(out_dir / name, name, metrics, buckets, plots=plots)
        results[name] = metrics
        side_by_side[name] = (metrics, buckets)
    table = comparison(side_by_side)
    table["throughput"] = {**throughput.to_dict(), "batch_size": batch_size, "cached": sorted(cached)}
    write_text(out_dir / "comparison.json", json.dumps(table, indent=1, allow_nan=False))
    write_text(out_dir / "comparison.md", comparison_markdown(table) + "\n" + "\n".join(
        [*throughput.markdown(), f"Frames per network run (batch size): {batch_size}.", ""]))
    by_view = views_table({name: {v.name: side_by_side[entry_of[(name, v.name)]] for v in views[name]}
                           for name in detectors})
    write_text(out_dir / "views.json", json.dumps(by_view, indent=1, allow_nan=False))
    write_text(out_dir / "views.md", views_markdown(by_view))

    extent = max(metric_config.class_range.values()) + 5.0  # the evaluated region and a margin
    for i in render_frames:
        from centerpoint_deploy.evaluate.render import render_bev  # matplotlib: only when drawing
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
        from centerpoint_deploy.evaluate.render import render_pr_curves  # matplotlib: not at start-up

        render_pr_curves(metrics, folder / "pr_curves.png", title=title)
