"""``centerpoint-deploy evaluate`` (run backends over a dataset and score them side by side) and
``centerpoint-deploy score`` (score prediction / ground-truth JSON files from elsewhere).

Python equivalent of ``evaluate``::

    config = load_config("demo")
    frames = open_dataset("data/t4", class_names=config.class_names, sweeps_num=config.points.sweeps_num)
    encoder, head, rot = create_backends("onnxruntime", config, deploy_dir="deploy/")
    detectors = {"onnxruntime": Detector(config, encoder, head, rot_y_axis_reference=rot)}
    metrics = evaluate_backends(frames, detectors, "eval/", t4_metric_config(config.class_names))

and of ``score``::

    preds, _ = load_boxes("preds.json", "predictions")
    gts, _ = load_boxes("gt.json", "ground_truth")
    metrics = evaluate_boxes(preds, gts, nuscenes_metric_config())
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Mapping, Optional

import torch
import typer
from rich.console import Console
from rich.table import Table

from centerpoint_deploy.backends.factory import SUPPORTED_KINDS, create_backends
from centerpoint_deploy.cli.app import app
from centerpoint_deploy.cli.detect import RANDOM_WEIGHTS_SEED
from centerpoint_deploy.config import load_config
from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.data import open_dataset
from centerpoint_deploy.detector import Detector
from centerpoint_deploy.errors import BackendError, EvaluationError
from centerpoint_deploy.evaluate.data_classes import DetectionMetrics
from centerpoint_deploy.evaluate.io import METRIC_PRESETS, load_boxes, load_metric_config
from centerpoint_deploy.evaluate.metrics import class_coverage, evaluate_boxes, evaluate_distance_buckets
from centerpoint_deploy.evaluate.distributed import rank_group
from centerpoint_deploy.evaluate.node_spread import spread_markdown, voxelization_spread
from centerpoint_deploy.evaluate.runner import evaluate_backends, fingerprint_files, write_metrics

_METRIC_HELP = f"Metric preset ({', '.join(METRIC_PRESETS)}: 121 m for every class + distance buckets / devkit " \
               "cvpr_2019) or a metric-config .json."


def _print_summary(results: Mapping[str, DetectionMetrics], out: Path) -> None:
    table = Table(title=f"detection metrics (reports in {out})")
    keys = ("mAP", "NDS", "mATE", "mASE", "mAOE", "mAVE", "mAAE")
    table.add_column("backend")
    for key in keys:
        table.add_column(key, justify="right")
    for name, metrics in results.items():
        summary = metrics.summary()
        table.add_row(name, *[f"{summary[k]:.4f}" for k in keys])
    Console().print(table)


def _build_detectors(kinds: list[str], config: ModelConfig, checkpoint: Path | None, deploy_dir: Path | None,
                     device: str, random_weights: bool) -> tuple[dict[str, Detector], dict[str, str]]:
    """One detector per backend kind, and a fingerprint of the weights each one runs."""
    if len(set(kinds)) != len(kinds):
        raise BackendError(f"--backend values must be distinct, got {kinds}")
    if "pytorch" in kinds and (checkpoint is None) == (not random_weights):
        raise BackendError("the pytorch backend needs exactly one of --checkpoint PATH or --random-weights")
    if "pytorch" not in kinds and (checkpoint is not None or random_weights):
        raise BackendError("--checkpoint/--random-weights are for the pytorch backend, which is not requested")
    if any(k != "pytorch" for k in kinds) and deploy_dir is None:
        raise BackendError("the onnxruntime/tensorrt backends need --deploy-dir (from 'centerpoint-deploy export')")
    detectors, fingerprints = {}, {}
    for kind in kinds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            encoder, head, rot = create_backends(kind, config, device=device,
                                                 checkpoint=checkpoint if kind == "pytorch" else None,
                                                 deploy_dir=None if kind == "pytorch" else deploy_dir)
        detectors[kind] = Detector(config, encoder, head, rot_y_axis_reference=rot)
        if kind == "pytorch":
            fingerprints[kind] = fingerprint_files(checkpoint) if checkpoint else f"random-seed-{RANDOM_WEIGHTS_SEED}"
        else:
            fingerprints[kind] = fingerprint_files(deploy_dir)
    return detectors, fingerprints


@app.command("evaluate")
def evaluate(
    dataset: str = typer.Option(..., "--dataset", help="T4 scene(s) folder, split file (.yaml[:SPLIT]/.txt) or info .pkl."),
    config: str = typer.Option(..., "--config", "-c", help="Preset name, project .yaml or AWML/mmdet3d .py config."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for predictions, metrics and plots."),
    backend: list[str] = typer.Option(["pytorch"], "--backend", "-b",
                                      help=f"Repeat for several; one of {', '.join(SUPPORTED_KINDS)}. The first is the reference."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="mmdet3d/AWML checkpoint (pytorch backend)."),
    deploy_dir: Optional[Path] = typer.Option(None, "--deploy-dir", help="Exported ONNX/engines (onnxruntime, tensorrt)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N."),
    metric: str = typer.Option("t4", "--metric", help=_METRIC_HELP),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", min=1, help="Evaluate only the first N frames."),
    category_mapping: str = typer.Option("j6gen2", "--category-mapping", help="j6gen2, nuscenes or identity."),
    render: int = typer.Option(0, "--render", min=0, help="Draw bird's-eye views of the first N evaluated frames."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Re-run every backend even if cached predictions match."),
    no_plots: bool = typer.Option(False, "--no-plots", help="Skip the precision-recall PNGs."),
    random_weights: bool = typer.Option(False, "--random-weights", help="Randomly initialised pytorch model (smoke tests)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0,
                                          help="Processes reading frames ahead (default: up to 4, one core left free)."),
    voxelization_seeds: Optional[str] = typer.Option(
        None, "--voxelization-seeds",
        help="E.g. 0,1,2: evaluate the first backend with the Autoware node's shuffled voxelization once per "
             "seed and report the spread of mAP/NDS and box movement (voxelization_spread.md)."),
) -> None:
    """Run each backend over the dataset, write nuScenes-style metrics per backend and a comparison.

    Every backend is scored twice from one network run: with mmdet3d's post-processing (what
    training reports) and the Autoware node's (``<backend>@autoware``, what the car outputs);
    ``views.md`` puts them side by side with the delta.

    Under ``torchrun --nproc_per_node N`` each process runs its share of the frames on its own
    GPU (``cuda:LOCAL_RANK``) or CPU; rank 0 scores them and writes the reports."""
    with rank_group() as group:
        model_config = load_config(config)
        frames = open_dataset(dataset, class_names=model_config.class_names, category_mapping=category_mapping,
                              sweeps_num=model_config.points.sweeps_num, load_dim=model_config.points.load_dim)
        indices = list(range(min(len(frames), max_frames or len(frames))))
        if not indices:
            raise EvaluationError(f"dataset '{dataset}' has no frames")
        detectors, fingerprints = _build_detectors(backend, model_config, checkpoint, deploy_dir,
                                                   str(group.device(device)), random_weights)
        metric_config = load_metric_config(metric, model_config.class_names)
        with ExitStack() as stack:
            for detector in detectors.values():
                stack.callback(detector.close)
            if voxelization_seeds is not None:
                first = backend[0]
                seeds = _seeds(voxelization_seeds)
                summary = voxelization_spread(frames, detectors[first], out, metric_config, seeds, cache=not no_cache,
                                              frames=indices, workers=workers, group=group,
                                              fingerprints={f"seed-{s}": fingerprints[first] for s in seeds})
                if group.is_main:
                    Console().print(spread_markdown(summary), markup=False, highlight=False)
                return
            results = evaluate_backends(frames, detectors, out, metric_config, cache=not no_cache, frames=indices,
                                        fingerprints=fingerprints, render_frames=indices[:render],
                                        plots=not no_plots, workers=workers, group=group)
        if group.is_main:
            _print_summary(results, out)


def _seeds(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise EvaluationError(f"--voxelization-seeds '{text}' must be comma-separated integers, e.g. 0,1,2") from None


@app.command("score")
def score(
    predictions: Path = typer.Option(..., "--predictions", "-p", help="Prediction box file (JSON, see docs/evaluation.md)."),
    ground_truth: Path = typer.Option(..., "--ground-truth", "-g", help="Ground-truth box file (JSON)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for metrics.json, metrics.md, pr_curves.png."),
    metric: str = typer.Option("t4", "--metric", help=_METRIC_HELP),
    no_plots: bool = typer.Option(False, "--no-plots", help="Skip the precision-recall PNG."),
) -> None:
    """Score a prediction file against a ground-truth file (no model involved)."""
    preds, pred_meta = load_boxes(predictions, "predictions")
    gts, gt_meta = load_boxes(ground_truth, "ground_truth")
    class_names = gt_meta.get("class_names") or sorted({n for b in gts.values() for n in b.names.tolist()})
    metric_config = load_metric_config(metric, class_names)
    coverage = class_coverage(preds, gts, metric_config)
    Console(stderr=True).print(coverage.describe(), highlight=False, markup=False, soft_wrap=True)
    metrics = evaluate_boxes(preds, gts, metric_config)
    buckets = evaluate_distance_buckets(preds, gts, metric_config)
    name = str(pred_meta.get("backend", predictions.stem))
    write_metrics(out, name, metrics, buckets, plots=not no_plots)
    _print_summary({name: metrics}, out)
