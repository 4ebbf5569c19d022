"""``centerpoint-deploy calibrate-thresholds``: per class x distance bin score thresholds from an
evaluation run's predictions and ground truth, optionally written into a bundle.

Calibrate on the node's boxes at a low score floor (``evaluate --calibration-floor 0.1`` writes
them to ``<backend>@calibration/predictions.json``). Python equivalent::

    boxes = read_calibration_boxes("eval/onnxruntime@calibration/predictions.json", "eval/ground_truth.json")
    fit, held = split_samples(boxes.preds, 0.5)
    outcome = calibrate_bundle(*boxes.split(fit), boxes.class_names, "deploy/", "calib/", CalibrationSettings(),
                               holdout=boxes.split(held))
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

# Defaults of evaluate.calibrate.CalibrationSettings, written here so that --help imports no numpy/torch.
_BINS, _MATCH_DISTANCE, _MIN_GT, _MIN_PREDICTIONS, _DEFAULT = "50,90,121,200", 2.0, 10, 10, 0.35


def _bins(text: str) -> tuple[float, ...]:
    from centerpoint_deploy.errors import EvaluationError

    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise EvaluationError(f"--bins must be comma-separated metres like '50,90,121,200', got {text!r}") from None


def calibrate_thresholds_command(
    predictions: Path = typer.Option(..., "--predictions", "-p",
                                     help="Prediction box file of an evaluation run: the node's boxes at a low score "
                                          "floor (evaluate --calibration-floor 0.1: <backend>@calibration/)."),
    ground_truth: Path = typer.Option(..., "--ground-truth", "-g", help="Ground-truth box file of the same samples."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for calibration.json/.md, the PR plot and the params."),
    bundle: Optional[Path] = typer.Option(None, "--bundle",
                                          help="A v4.1 bundle: its thresholds are the baseline and its bins the bins; "
                                               "the calibrated thresholds are written into its ml_package.param.yaml "
                                               "unless they lose F1 on the held-out frames."),
    bins: Optional[str] = typer.Option(None, "--bins",
                                       help=f"Distance bin upper limits in metres (default: the bundle's, else "
                                            f"{_BINS})."),
    target_precision: Optional[float] = typer.Option(None, "--target-precision",
                                                     help="Instead of max F1: the smallest threshold reaching this "
                                                          "precision, in (0, 1]."),
    match_distance: float = typer.Option(_MATCH_DISTANCE, "--match-distance",
                                         help="Centre-distance match in metres."),
    min_gt: int = typer.Option(_MIN_GT, "--min-gt", help="Fewer GT boxes in a cell keep its baseline threshold."),
    min_predictions: int = typer.Option(_MIN_PREDICTIONS, "--min-predictions",
                                        help="Fewer predictions in a cell keep its baseline threshold."),
    holdout_predictions: Optional[Path] = typer.Option(None, "--holdout-predictions",
                                                       help="Predictions of held-out frames: F1 baseline vs calibrated."),
    holdout_ground_truth: Optional[Path] = typer.Option(None, "--holdout-ground-truth",
                                                        help="Ground truth of the held-out frames."),
    holdout_fraction: Optional[float] = typer.Option(None, "--holdout-fraction",
                                                     help="Instead of held-out files: hold out the last fraction of "
                                                          "the samples, in (0, 1)."),
    no_plots: bool = typer.Option(False, "--no-plots", help="Skip calibration_pr.png."),
) -> None:
    """Calibrate the node's score thresholds per class and distance bin (max F1 at 2 m, or a target precision)."""
    from rich.console import Console
    from rich.markup import escape

    from centerpoint_deploy.errors import EvaluationError
    from centerpoint_deploy.evaluate.calibrate import CalibrationSettings
    from centerpoint_deploy.evaluate.calibrate_bundle import bundle_settings, calibrate_bundle, split_samples
    from centerpoint_deploy.evaluate.calibrate_report import calibrate_boxes, read_calibration_boxes
    from centerpoint_deploy.outputs import folder_lock, prepare_dir
    from centerpoint_deploy.postprocess.modes import CALIBRATION_VIEW

    settings = CalibrationSettings(distance_bin_upper_limits=_bins(bins or _BINS), match_distance=match_distance,
                                   target_precision=target_precision, min_gt=min_gt, min_predictions=min_predictions)
    if (holdout_predictions is None) != (holdout_ground_truth is None):
        raise EvaluationError("give both --holdout-predictions and --holdout-ground-truth, or neither")
    if holdout_fraction is not None and (holdout_predictions is not None or not 0.0 < holdout_fraction < 1.0):
        raise EvaluationError("--holdout-fraction must be in (0, 1) and cannot be combined with held-out files")
    baseline = None
    if bundle is not None:
        bundle_fit, baseline = bundle_settings(bundle, settings)
        if bins is not None and bundle_fit.distance_bin_upper_limits != settings.distance_bin_upper_limits:
            raise EvaluationError(f"--bins {list(settings.distance_bin_upper_limits)} differ from the bundle's "
                                  f"distance_bin_upper_limits {list(baseline.distance_bin_upper_limits)}")
        settings = bundle_fit
    folder = prepare_dir(out)
    boxes = read_calibration_boxes(predictions, ground_truth, None if baseline is None else baseline.class_names)
    fit, held = (boxes.preds, boxes.gts), None
    if holdout_predictions is not None:
        other = read_calibration_boxes(holdout_predictions, holdout_ground_truth, boxes.class_names)
        held = other.preds, other.gts
    elif holdout_fraction is not None:
        fit_tokens, held_tokens = split_samples(boxes.preds, holdout_fraction)
        fit, held = boxes.split(fit_tokens), boxes.split(held_tokens)
    console = Console(stderr=True, highlight=False)
    if boxes.view and boxes.view != CALIBRATION_VIEW:
        console.print(escape(f"warning: {predictions} holds the '{boxes.view}' view; thresholds are calibrated on "
                             f"the node's boxes at a low floor ('{CALIBRATION_VIEW}' view, evaluate "
                             "--calibration-floor) -- a thresholded view can only raise them"))
    extra = {"predictions": str(predictions), "ground_truth": str(ground_truth), "bundle": str(bundle or ""),
             "holdout": [str(holdout_predictions), str(holdout_ground_truth)] if holdout_predictions else
             holdout_fraction}
    with folder_lock(folder, "calibrate-thresholds"):
        if bundle is not None:
            outcome = calibrate_bundle(*fit, boxes.class_names, bundle, folder, settings, holdout=held,
                                       plots=not no_plots, extra=extra)
            calibration, comparisons, files = outcome.calibration, outcome.comparisons, outcome.files
        else:
            calibration, comparisons, files = calibrate_boxes(*fit, boxes.class_names, folder, settings, holdout=held,
                                                              plots=not no_plots, extra=extra)
    for name, row in zip(calibration.class_names, calibration.thresholds.min_confidence_scores):
        console.print(escape(f"{name}: " + ", ".join(f"{b} {t:.3f}" for b, t in zip(settings.bin_names, row))))
    kept = [f"{c.class_name} {c.bin_name}" for row in calibration.cells for c in row if not c.calibrated]
    if kept:
        console.print(escape(f"kept the baseline ({calibration.baseline_label}; too few boxes or no qualifying "
                             f"threshold, see {files['markdown']}): {', '.join(kept)}"))
    for comparison in comparisons:
        cell_default, cell_calibrated = comparison.cell_f1()
        console.print(escape(f"{comparison.label}: mean F1 per class x bin cell {cell_default:.4f} at the baseline "
                             f"({calibration.baseline_label}) -> {cell_calibrated:.4f} calibrated; pooled F1 "
                             f"{comparison.default.f1():.4f} -> {comparison.calibrated.f1():.4f}"))
    console.print(escape(f"wrote {', '.join(str(p) for p in files.values())}"))
    if bundle is not None:
        if not outcome.written:
            raise EvaluationError(f"{bundle}: thresholds not written ({outcome.reason}); the report is in {folder}")
        console.print(escape(f"wrote the calibrated thresholds into {bundle}/ml_package.param.yaml"))
