"""``centerpoint-deploy calibrate-thresholds``: per class x distance bin score thresholds from an
evaluation run's predictions and ground truth.

Python equivalent::

    settings = CalibrationSettings(distance_bin_upper_limits=(50, 90, 121, 200))
    calibration, comparisons, files = calibrate_files("eval/pytorch/predictions.json",
                                                      "eval/ground_truth.json", "calib/", settings)
    calibration.thresholds  # a ScoreThresholds, what ml_package.param.yaml holds
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
                                     help="Prediction box file of an evaluation run (ideally node post-processing, "
                                          "score thresholds 0)."),
    ground_truth: Path = typer.Option(..., "--ground-truth", "-g", help="Ground-truth box file of the same samples."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for calibration.json/.md, the PR plot and the params."),
    bins: str = typer.Option(_BINS, "--bins",
                             help="Distance bin upper limits in metres (the bundle's distance_bin_upper_limits)."),
    target_precision: Optional[float] = typer.Option(None, "--target-precision",
                                                     help="Instead of max F1: the smallest threshold reaching this "
                                                          "precision, in (0, 1]."),
    match_distance: float = typer.Option(_MATCH_DISTANCE, "--match-distance",
                                         help="Centre-distance match in metres."),
    min_gt: int = typer.Option(_MIN_GT, "--min-gt", help=f"Fewer GT boxes in a cell keep {_DEFAULT:g}."),
    min_predictions: int = typer.Option(_MIN_PREDICTIONS, "--min-predictions",
                                        help=f"Fewer predictions in a cell keep {_DEFAULT:g}."),
    holdout_predictions: Optional[Path] = typer.Option(None, "--holdout-predictions",
                                                       help="Predictions of held-out frames: F1 default vs calibrated."),
    holdout_ground_truth: Optional[Path] = typer.Option(None, "--holdout-ground-truth",
                                                        help="Ground truth of the held-out frames."),
    no_plots: bool = typer.Option(False, "--no-plots", help="Skip calibration_pr.png."),
) -> None:
    """Calibrate the node's score thresholds per class and distance bin (max F1 at 2 m, or a target precision)."""
    from rich.console import Console
    from rich.markup import escape

    from centerpoint_deploy.errors import EvaluationError
    from centerpoint_deploy.evaluate.calibrate import CalibrationSettings
    from centerpoint_deploy.evaluate.calibrate_report import calibrate_files
    from centerpoint_deploy.outputs import folder_lock, prepare_dir

    settings = CalibrationSettings(distance_bin_upper_limits=_bins(bins), match_distance=match_distance,
                                   target_precision=target_precision, min_gt=min_gt, min_predictions=min_predictions)
    if (holdout_predictions is None) != (holdout_ground_truth is None):
        raise EvaluationError("give both --holdout-predictions and --holdout-ground-truth, or neither")
    holdout = None if holdout_predictions is None else (holdout_predictions, holdout_ground_truth)
    folder = prepare_dir(out)
    with folder_lock(folder, "calibrate-thresholds"):
        calibration, comparisons, files = calibrate_files(predictions, ground_truth, folder, settings,
                                                          holdout=holdout, plots=not no_plots)
    console = Console(stderr=True, highlight=False)
    kept = [f"{c.class_name} {c.bin_name}" for row in calibration.cells for c in row if not c.calibrated]
    for name, row in zip(calibration.class_names, calibration.thresholds.min_confidence_scores):
        console.print(escape(f"{name}: " + ", ".join(f"{b} {t:.3f}" for b, t in zip(settings.bin_names, row))))
    if kept:
        console.print(escape(f"kept the default {settings.default_threshold:g} (too few boxes or no qualifying "
                             f"threshold; see {files['markdown']}): {', '.join(kept)}"))
    for comparison in comparisons:
        cell_default, cell_calibrated = comparison.cell_f1()
        console.print(escape(f"{comparison.label}: mean F1 per class x bin cell {cell_default:.4f} at "
                             f"{settings.default_threshold:g} -> {cell_calibrated:.4f} calibrated; pooled F1 "
                             f"{comparison.default.f1():.4f} -> {comparison.calibrated.f1():.4f}"))
    console.print(escape(f"wrote {', '.join(str(p) for p in files.values())}"))
