"""Threshold calibration written into a bundle: its thresholds are the baseline, its distance
bins the bins, and the calibrated thresholds replace them in ``ml_package.param.yaml`` when
they do not lose F1 on held-out frames.

The one path from a calibration to a bundle, shared by ``calibrate-thresholds --bundle`` and
the main job's calibration step::

    outcome = calibrate_bundle(preds, gts, ("car", ...), "deploy/", "calibration/", CalibrationSettings(),
                               holdout=(held_preds, held_gts))
    outcome.written, outcome.reason   # whether ml_package.param.yaml now holds the calibrated thresholds

The bundle records the outcome as its ``calibration`` check in ``deploy_metadata.yaml``
(written or not, with the F1 figures).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from centerpoint_deploy.errors import EvaluationError
from centerpoint_deploy.evaluate.calibrate import Calibration, CalibrationSettings
from centerpoint_deploy.evaluate.calibrate_report import ThresholdComparison, calibrate_boxes
from centerpoint_deploy.evaluate.data_classes import SampleBoxes
from centerpoint_deploy.export.bundle import read_node_params, record_check, write_thresholds
from centerpoint_deploy.export.manifest import CheckRecord, Manifest, utc_now
from centerpoint_deploy.postprocess.node_params import ScoreThresholds

#: Name of the check in ``deploy_metadata.yaml``.
CHECK_NAME = "calibration"


@dataclass(frozen=True)
class BundleCalibration:
    """What :func:`calibrate_bundle` did.

    Attributes:
        calibration: the per-cell result (its baseline: the bundle's thresholds before).
        comparisons: baseline vs calibrated on the calibration frames, then the held-out ones.
        files: the report files by kind (``json``, ``markdown``, ``params``, ``plot``).
        written: whether the bundle now holds the calibrated thresholds.
        reason: why they were not written (``""`` when they were).
        manifest: the bundle's metadata afterwards.
    """

    calibration: Calibration
    comparisons: list[ThresholdComparison]
    files: dict[str, Path]
    written: bool
    reason: str
    manifest: Manifest

    @property
    def judged(self) -> ThresholdComparison:
        """The comparison the decision was made on: the held-out one when there is one."""
        return self.comparisons[-1]


def bundle_settings(bundle_dir: Path | str, settings: CalibrationSettings) -> tuple[CalibrationSettings,
                                                                                  ScoreThresholds]:
    """``settings`` with the bundle's distance bins, and the bundle's thresholds (the baseline).

    Raises:
        BundleError / BackendError: the bundle fails its checks or is ``legacy``.
    """
    current = read_node_params(bundle_dir).thresholds
    return replace(settings, distance_bin_upper_limits=current.distance_bin_upper_limits), current


def calibrate_bundle(preds: Mapping[str, SampleBoxes], gts: Mapping[str, SampleBoxes], class_names: Sequence[str],
                     bundle_dir: Path | str, out_dir: Path | str, settings: CalibrationSettings, *,
                     holdout: tuple[Mapping[str, SampleBoxes], Mapping[str, SampleBoxes]] | None = None,
                     plots: bool = True, extra: Mapping[str, Any] | None = None) -> BundleCalibration:
    """Calibrate against the bundle's thresholds and write the result into it (module doc).

    The calibrated thresholds are written unless no cell could be calibrated, or the mean
    per-cell F1 on the held-out frames (on the calibration frames without ``holdout``) is
    lower than the bundle's thresholds give there. Cells that cannot be calibrated keep the
    bundle's value. The bins are the bundle's, whatever ``settings`` says.

    Raises:
        BundleError / BackendError: the bundle fails its checks, is ``legacy``, or names other classes.
        EvaluationError: the boxes do not fit (see :func:`~centerpoint_deploy.evaluate.calibrate.calibrate_thresholds`).
    """
    settings, current = bundle_settings(bundle_dir, settings)
    calibration, comparisons, files = calibrate_boxes(preds, gts, class_names, out_dir, settings, holdout=holdout,
                                                      baseline=current, plots=plots, extra=extra)
    judged = comparisons[-1]
    baseline_f1, calibrated_f1 = judged.cell_f1()
    if not any(cell.calibrated for row in calibration.cells for cell in row):
        reason = "no class x bin cell had enough boxes to calibrate"
    elif calibrated_f1 < baseline_f1:
        reason = (f"the calibrated thresholds lose F1 on the {judged.label} (mean per cell {baseline_f1:.4f} -> "
                  f"{calibrated_f1:.4f})")
    else:
        reason = ""
    if not reason:
        write_thresholds(bundle_dir, ScoreThresholds(current.class_names, current.distance_bin_upper_limits,
                                                     calibration.thresholds.min_confidence_scores))
    cells = sum(cell.calibrated for row in calibration.cells for cell in row)
    summary = (f"{'written' if not reason else 'not written: ' + reason}; {cells} of "
               f"{sum(len(row) for row in calibration.cells)} class x bin cells calibrated on "
               f"{calibration.num_samples} samples, judged on the {judged.label} ({judged.num_samples} samples)")
    manifest = record_check(bundle_dir, CHECK_NAME, CheckRecord(not reason, utc_now(), summary, {
        "cell_f1_baseline": baseline_f1, "cell_f1_calibrated": calibrated_f1,
        "f1_baseline": judged.default.f1(), "f1_calibrated": judged.calibrated.f1()}))
    return BundleCalibration(calibration, comparisons, files, not reason, reason, manifest)


def split_samples(samples: Mapping[str, SampleBoxes], holdout_fraction: float) -> tuple[list[str], list[str]]:
    """Tokens of ``samples`` (in order) split into calibration and held-out ones: the last
    ``holdout_fraction`` of them are held out, contiguously (neighbouring frames of a scene are
    alike, so alternating frames would leak), at least one on each side when there are two.

    Raises:
        EvaluationError: ``holdout_fraction`` outside [0, 1).
    """
    if not 0.0 <= holdout_fraction < 1.0:
        raise EvaluationError(f"holdout fraction must be in [0, 1), got {holdout_fraction!r}")
    tokens = list(samples)
    held = round(len(tokens) * holdout_fraction)
    if holdout_fraction > 0 and len(tokens) >= 2:
        held = min(max(held, 1), len(tokens) - 1)
    return tokens[:len(tokens) - held], tokens[len(tokens) - held:]
