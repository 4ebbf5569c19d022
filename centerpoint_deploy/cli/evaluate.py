"""``centerpoint-deploy evaluate`` (run backends over a dataset and score them side by side) and
``centerpoint-deploy score`` (score prediction / ground-truth JSON files from elsewhere).

Python equivalent of ``evaluate``::

    config = load_config("demo")
    frames = open_dataset("data/t4", class_names=config.class_names, sweeps_num=config.points.sweeps_num)
    detectors = {"onnxruntime": build_detector(VariantSpec.parse("onnxruntime"), config, deploy_dir="deploy/")}
    metrics = evaluate_backends(frames, detectors, "eval/", job_metric_config("t4", None, config))

and of ``score``::

    preds, _ = load_boxes("preds.json", "predictions")
    gts, _ = load_boxes("gt.json", "ground_truth")
    metrics = evaluate_boxes(preds, gts, nuscenes_metric_config())
"""

from __future__ import annotations

import contextlib
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Optional

import typer

from centerpoint_deploy.cli.common import BACKEND_HELP, CHECKPOINT_HELP, CLASS_RANGE_HELP, CONFIG_HELP, DEPLOY_DIR_HELP, DEVICE_HELP, MAX_FRAMES_HELP, METRIC_HELP, RANDOM_WEIGHTS_SEED, bounded, positive, resolve_checkpoint, resolve_device
from centerpoint_deploy.errors import BackendError, EvaluationError
from centerpoint_deploy.outputs import folder_lock, prepare_dir

if TYPE_CHECKING:
    import torch

    from centerpoint_deploy.config.schema import ModelConfig
    from centerpoint_deploy.evaluate.data_classes import DetectionMetrics
    from centerpoint_deploy.stages import Pipeline


def _print_summary(results: Mapping[str, "DetectionMetrics"], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from centerpoint_deploy.evaluate.report import SUMMARY_KEYS, summary_header

    table = Table(title=f"detection metrics (reports in {out})")
    table.add_column("backend")
    for title in summary_header():
        table.add_column(title, justify="right")
    for name, metrics in results.items():
        summary = metrics.summary()
        table.add_row(name, *[f"{summary[k]:.4f}" for k in SUMMARY_KEYS])
    Console(markup=False, highlight=False).print(table)


def _build_detectors(kinds: list[str], config: "ModelConfig", config_spec: str, checkpoint: Path | None,
                     deploy_dir: Path | None, device: "torch.device",
                     random_weights: bool) -> tuple[dict[str, "Pipeline"], dict[str, str], Path | None]:
    """One detector per backend variant, a fingerprint of the weights each one runs, and the checkpoint used."""
    from centerpoint_deploy.evaluate.runner import fingerprint_files
    from centerpoint_deploy.variant import VariantSpec, build_detector

    specs = [VariantSpec.parse(kind, device=device) for kind in kinds]
    if len(set(specs)) != len(specs):
        raise BackendError(f"--backend values must be distinct variants, got {kinds}")
    checkpoint_kinds = [spec.runs_checkpoint for spec in specs]
    weights = resolve_checkpoint(checkpoint, config_spec, random_weights, needed=any(checkpoint_kinds))
    if not all(checkpoint_kinds) and deploy_dir is None:
        raise BackendError("the onnxruntime/tensorrt backends need --deploy-dir (from 'centerpoint-deploy export')")
    detectors, fingerprints = {}, {}
    for kind, spec, on_checkpoint in zip(kinds, specs, checkpoint_kinds):
        detectors[kind] = build_detector(spec, config, checkpoint=weights if on_checkpoint else None,
                                         deploy_dir=None if on_checkpoint else deploy_dir, seed=RANDOM_WEIGHTS_SEED)
        if on_checkpoint:
            fingerprints[kind] = fingerprint_files(weights) if weights else f"random-seed-{RANDOM_WEIGHTS_SEED}"
        else:
            fingerprints[kind] = fingerprint_files(deploy_dir)
    return detectors, fingerprints, weights


def evaluate(
    dataset: str = typer.Option(..., "--dataset", help="T4 scene(s) folder, split file (.yaml[:SPLIT]/.txt) or info .pkl."),
    config: str = typer.Option(..., "--config", "-c", help=CONFIG_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for predictions, metrics and plots."),
    backend: list[str] = typer.Option(["pytorch"], "--backend", "-b",
                                      help=f"Repeat for several; the first is the reference. {BACKEND_HELP}"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help=CHECKPOINT_HELP),
    deploy_dir: Optional[Path] = typer.Option(None, "--deploy-dir", help=DEPLOY_DIR_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    metric: str = typer.Option("t4", "--metric", help=METRIC_HELP),
    class_range: Optional[float] = typer.Option(None, "--class-range", callback=positive, help=CLASS_RANGE_HELP),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", callback=bounded(1), help=MAX_FRAMES_HELP),
    category_mapping: str = typer.Option("j6gen2", "--category-mapping", help="j6gen2, nuscenes or identity."),
    render: int = typer.Option(0, "--render", callback=bounded(0),
                               help="Draw bird's-eye views of N evaluated frames, spread evenly over them."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Re-run every backend even if cached predictions match."),
    no_plots: bool = typer.Option(False, "--no-plots", help="Skip the precision-recall PNGs."),
    random_weights: bool = typer.Option(False, "--random-weights", help="Randomly initialised pytorch model (smoke tests)."),
    workers: Optional[int] = typer.Option(None, "--workers", callback=bounded(0),
                                          help="Processes reading frames ahead (default: 4, or one per 1.5 files a "
                                               "frame reads when that is more, e.g. 8 with 10 sweeps; one core left "
                                               "free)."),
    calibration_floor: Optional[float] = typer.Option(
        None, "--calibration-floor",
        help="Also keep the node's boxes down to this score (e.g. 0.1) in <backend>@calibration/: the input of "
             "calibrate-thresholds."),
    batch_size: int = typer.Option(1, "--batch-size", callback=bounded(1),
                                   help="Frames per network run (boxes can differ from batch 1's in the last float "
                                        "bit; a batch size other than 1 is part of the prediction cache key)."),
    voxelization_seeds: Optional[str] = typer.Option(
        None, "--voxelization-seeds",
        help="E.g. 0,1,2: evaluate the first backend with the Autoware node's shuffled voxelization once per "
             "seed and report the spread of mAP/NDS and box movement (voxelization_spread.md)."),
) -> None:
    """Run each backend over the dataset, write nuScenes-style metrics per backend and a comparison.

    Every backend is scored twice from one network run: with mmdet3d's post-processing (what
    training reports) and the Autoware node's (``<backend>@autoware``, what the car outputs, with
    the bundle's thresholds for a deploy directory); ``views.md`` puts them side by side with the
    delta.

    Under ``torchrun --nproc_per_node N`` each process runs its share of the frames on its own
    GPU (``cuda:LOCAL_RANK``) or CPU; rank 0 scores them and writes the reports."""
    if voxelization_seeds is not None and batch_size != 1:
        raise EvaluationError("--batch-size is for the plain evaluation; --voxelization-seeds runs one frame at a time")
    prepare_dir(out)
    if calibration_floor is not None and not 0.0 <= calibration_floor < 1.0:
        raise EvaluationError(f"--calibration-floor must be in [0, 1), got {calibration_floor:g}")
    from centerpoint_deploy.config import load_config
    from centerpoint_deploy.data import DatasetOpening

    model_config = load_config(config)
    # the dataset is read by child processes forked now, while this process imports torch
    with DatasetOpening(dataset, class_names=model_config.class_names, category_mapping=category_mapping,
                        sweeps_num=model_config.points.sweeps_num, load_dim=model_config.points.load_dim) as opening:
        device_asked = resolve_device(device)
        from rich.console import Console

        from centerpoint_deploy.data.loader import FrameLoader
        from centerpoint_deploy.evaluate.distributed import rank_group
        from centerpoint_deploy.evaluate.runner import evaluate_backends
        from centerpoint_deploy.job.inputs import job_metric_config, model_reach, spread_indices, spread_subset

        with rank_group() as group:
            metric_config = job_metric_config(metric, class_range, model_config)
            frames = opening.result()
            indices = spread_indices(len(frames), max_frames)
            if not indices:
                raise EvaluationError(f"dataset '{dataset}' has no frames")
            target = group.device(device_asked)
            if voxelization_seeds is None:  # the readers start while the process is small (before CUDA, models)
                FrameLoader(frames, group.shard(indices), model_config.points.use_dim, workers=workers,
                            batch_size=batch_size, device=target).start()  # the device decides the slots' layout
            detectors, fingerprints, weights = _build_detectors(backend, model_config, config, checkpoint, deploy_dir,
                                                                target, random_weights)
            console = Console(stderr=True, markup=False, highlight=False)
            ranges = ", ".join(f"{r:g}" for r in sorted(set(metric_config.class_range.values())))
            weights_text = f"checkpoint {weights}" if weights else "random weights" if random_weights else ""
            sources = [text for text in (weights_text, f"deploy dir {deploy_dir}" if deploy_dir else "") if text]
            if group.is_main:
                console.print(f"evaluating {', '.join(backend)} on {len(indices)} of {len(frames)} frames, "
                              f"device {target}, {', '.join(sources)}; class range {ranges} m (the model's grid reaches "
                              f"{model_reach(model_config):g} m)", soft_wrap=True)
            lock = folder_lock(out, "centerpoint-deploy evaluate") if group.is_main else contextlib.nullcontext()
            with ExitStack() as stack, lock:
                for detector in detectors.values():
                    stack.callback(detector.close)
                if voxelization_seeds is not None:
                    from centerpoint_deploy.evaluate.node_spread import spread_markdown, voxelization_spread

                    first = backend[0]
                    seeds = _seeds(voxelization_seeds)
                    summary = voxelization_spread(frames, detectors[first], out, metric_config, seeds,
                                                  cache=not no_cache, frames=indices, workers=workers, group=group,
                                                  fingerprints={f"seed-{s}": fingerprints[first] for s in seeds})
                    if group.is_main:
                        Console().print(spread_markdown(summary), markup=False, highlight=False)
                    return
                results = evaluate_backends(frames, detectors, out, metric_config, cache=not no_cache, frames=indices,
                                            fingerprints=fingerprints, render_frames=spread_subset(indices, render),
                                            plots=not no_plots, console=console, workers=workers, group=group,
                                            calibration_floor=calibration_floor, batch_size=batch_size)
            if group.is_main:
                _print_summary(results, out)


def _seeds(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise EvaluationError(f"--voxelization-seeds '{text}' must be comma-separated integers, e.g. 0,1,2") from None


def score(
    predictions: Path = typer.Option(..., "--predictions", "-p", help="Prediction box file (JSON, see docs/evaluation.md)."),
    ground_truth: Path = typer.Option(..., "--ground-truth", "-g", help="Ground-truth box file (JSON)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for metrics.json, metrics.md, pr_curves.png."),
    metric: str = typer.Option("t4", "--metric", help=METRIC_HELP),
    no_plots: bool = typer.Option(False, "--no-plots", help="Skip the precision-recall PNG."),
) -> None:
    """Score a prediction file against a ground-truth file (no model involved)."""
    prepare_dir(out)

    from centerpoint_deploy.evaluate.io import load_boxes, load_metric_config
    from centerpoint_deploy.evaluate.metrics import class_coverage, evaluate_boxes, evaluate_distance_buckets
    from centerpoint_deploy.evaluate.runner import write_metrics
    from centerpoint_deploy.terminal import plain_console

    preds, pred_meta = load_boxes(predictions, "predictions")
    gts, gt_meta = load_boxes(ground_truth, "ground_truth")
    class_names = gt_meta.get("class_names") or sorted({n for b in gts.values() for n in b.names.tolist()})
    metric_config = load_metric_config(metric, class_names)
    coverage = class_coverage(preds, gts, metric_config)
    plain_console().print(coverage.describe(), soft_wrap=True)
    metrics = evaluate_boxes(preds, gts, metric_config)
    buckets = evaluate_distance_buckets(preds, gts, metric_config)
    name = str(pred_meta.get("backend", predictions.stem))
    with folder_lock(out, "centerpoint-deploy score"):
        write_metrics(out, name, metrics, buckets, plots=not no_plots)
    _print_summary({name: metrics}, out)
