"""Reports of a threshold calibration: JSON, Markdown, the PR curves with the chosen operating
points (PNG), and the node's ``detection_score_thresholds`` block as a parameter file.

Output folder::

    out_dir/
      calibration.json               settings, thresholds, every cell with its PR curve, the comparisons
      calibration.md                 thresholds per class x bin, P / R / F1 there and at the default
      calibration_pr.png             per class: precision over recall per bin, chosen point and default
      score_thresholds.param.yaml    /**: ros__parameters: detection_score_thresholds (the node's layout)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from centerpoint_deploy.errors import EvaluationError
from centerpoint_deploy.evaluate.calibrate import (
    Calibration,
    CalibrationSettings,
    OperatingPoint,
    calibrate_thresholds,
    operating_point,
)
from centerpoint_deploy.evaluate.data_classes import SampleBoxes
from centerpoint_deploy.evaluate.io import load_boxes
from centerpoint_deploy.outputs import replacing, write_text
from centerpoint_deploy.postprocess.node_params import ScoreThresholds

#: Files of the report.
JSON_NAME, MARKDOWN_NAME, PLOT_NAME, PARAMS_NAME = (
    "calibration.json", "calibration.md", "calibration_pr.png", "score_thresholds.param.yaml")


@dataclass(frozen=True)
class ThresholdComparison:
    """The baseline and the calibrated thresholds on one data set (exact, kept boxes matched).

    Attributes:
        label: what the data is (e.g. ``"calibration frames"``, ``"held-out frames"``).
        num_samples: its samples.
        default, calibrated: the counts of the baseline thresholds and of the calibrated ones.
    """

    label: str
    num_samples: int
    default: OperatingPoint
    calibrated: OperatingPoint

    def cell_f1(self) -> tuple[float, float]:
        """Mean over the class x bin cells that hold GT boxes or predictions of the per-cell F1,
        default and calibrated: what the calibration maximises."""
        d, c = self.default, self.calibrated
        occupied = [(i, b) for i in range(len(d.class_names)) for b in range(len(d.bin_names))
                    if d.tp[i, b] + d.fp[i, b] + d.fn[i, b] + c.tp[i, b] + c.fp[i, b] + c.fn[i, b]]
        if not occupied:
            return 0.0, 0.0
        return (float(np.mean([d.f1(d.class_names[i], b) for i, b in occupied])),
                float(np.mean([c.f1(c.class_names[i], b) for i, b in occupied])))

    def to_dict(self) -> dict[str, Any]:
        d, c = self.default, self.calibrated

        def counts(point: OperatingPoint, i: int, b: int) -> dict[str, int]:
            return {"tp": int(point.tp[i, b]), "fp": int(point.fp[i, b]), "fn": int(point.fn[i, b])}

        cell_default, cell_calibrated = self.cell_f1()
        return {
            "label": self.label, "num_samples": self.num_samples,
            "f1_default": d.f1(), "f1_calibrated": c.f1(),
            "macro_f1_default": d.macro_f1(), "macro_f1_calibrated": c.macro_f1(),
            "cell_f1_default": cell_default, "cell_f1_calibrated": cell_calibrated,
            "classes": {name: {"f1_default": d.f1(name), "f1_calibrated": c.f1(name)} for name in d.class_names},
            "cells": [{"class_name": name, "bin_name": bin_name, "f1_default": d.f1(name, b),
                       "f1_calibrated": c.f1(name, b), "default": counts(d, i, b), "calibrated": counts(c, i, b)}
                      for i, name in enumerate(d.class_names) for b, bin_name in enumerate(d.bin_names)],
        }


def thresholds_params(thresholds: ScoreThresholds) -> dict[str, Any]:
    """The node's parameter layout of ``thresholds``: class names upper case, one value per bin."""
    return {"/**": {"ros__parameters": {"detection_score_thresholds": {
        "distance_bin_upper_limits": [float(v) for v in thresholds.distance_bin_upper_limits],
        "min_confidence_scores": {name.upper(): [float(v) for v in row]
                                  for name, row in zip(thresholds.class_names, thresholds.min_confidence_scores)},
    }}}}


def _fmt(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def calibration_markdown(calibration: Calibration, comparisons: list[ThresholdComparison]) -> str:
    """Thresholds per class x bin with P / R / F1, the cells left at the default and why, and
    the F1 of default vs calibrated thresholds on each compared data set."""
    settings = calibration.settings
    label = calibration.baseline_label
    baseline = label if label != "current" else "the bundle's current ones"
    goal = (f"the smallest threshold reaching precision {settings.target_precision:g}"
            if settings.target_precision is not None else "the minimum confidence that maximises F1")
    lines = ["# Score-threshold calibration", "",
             f"{goal.capitalize()} per class and distance bin, at a {settings.match_distance:g} m centre-distance "
             f"match, over {calibration.num_samples} samples. Bins (upper limits) "
             f"{list(settings.distance_bin_upper_limits)} m; cells with fewer than {settings.min_gt} GT boxes or "
             f"{settings.min_predictions} predictions keep their baseline threshold "
             f"({baseline}).", ""]
    rows = [[c.class_name, c.bin_name, str(c.num_gt), str(c.num_predictions), f"{c.threshold:.4f}",
             _fmt(c.precision), _fmt(c.recall), _fmt(c.f1), f"{c.baseline:.4f}", _fmt(c.default_f1),
             "calibrated" if c.calibrated else c.note] for row in calibration.cells for c in row]
    lines += _table(["class", "distance", "#GT", "#pred", "threshold", "precision", "recall", "F1",
                     "baseline", "F1 @ baseline", "note"], rows) + [""]
    for comparison in comparisons:
        d, c = comparison.default, comparison.calibrated
        lines += [f"## {comparison.label} ({comparison.num_samples} samples): baseline ({label}) vs calibrated", "",
                  "F1 per cell (what the calibration maximises; cells without GT or predictions left out):", ""]
        rows = [[name, bin_name, str(int(d.tp[i, b] + d.fn[i, b])), _fmt(d.f1(name, b)), _fmt(c.f1(name, b)),
                 f"{c.f1(name, b) - d.f1(name, b):+.4f}"]
                for i, name in enumerate(d.class_names) for b, bin_name in enumerate(d.bin_names)
                if d.tp[i, b] + d.fp[i, b] + d.fn[i, b] + c.tp[i, b] + c.fp[i, b] + c.fn[i, b]]
        cell_default, cell_calibrated = comparison.cell_f1()
        rows.append(["mean over these cells", "", "", _fmt(cell_default), _fmt(cell_calibrated),
                     f"{cell_calibrated - cell_default:+.4f}"])
        lines += _table(["class", "distance", "#GT", f"F1 @ {label}", "F1 calibrated", "ΔF1"],
                        rows) + ["", "F1 per class (bins pooled):", ""]
        rows = [[name, _fmt(d.f1(name)), _fmt(c.f1(name)), f"{c.f1(name) - d.f1(name):+.4f}"] for name in d.class_names]
        rows.append(["all (pooled)", _fmt(d.f1()), _fmt(c.f1()), f"{c.f1() - d.f1():+.4f}"])
        rows.append(["mean over classes", _fmt(d.macro_f1()), _fmt(c.macro_f1()), f"{c.macro_f1() - d.macro_f1():+.4f}"])
        lines += _table(["class", f"F1 @ {label}", "F1 calibrated", "ΔF1"], rows) + [""]
    return "\n".join(lines)


def render_calibration(calibration: Calibration, path: str | Path) -> Path:
    """One panel per class: precision over recall of every bin as the threshold falls, the
    chosen threshold (star) and the default (circle) on each curve."""
    names = calibration.class_names
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(4.4 * cols, 3.6 * rows))
    FigureCanvasAgg(fig)
    for i, row in enumerate(calibration.cells):
        ax = fig.add_subplot(rows, cols, i + 1)
        for b, cell in enumerate(row):
            if cell.curve is None:
                continue
            color = f"C{b}"
            ax.plot(cell.curve.recall, cell.curve.precision, color=color, lw=1.2,
                    label=f"{cell.bin_name} ({cell.num_gt} GT)" + ("" if cell.calibrated else ", default kept"))
            p, r, _ = cell.curve.at(cell.baseline)
            ax.plot([r], [p], "o", color=color, mfc="none", ms=6)
            if cell.calibrated:
                ax.plot([cell.recall], [cell.precision], "*", color=color, ms=11, mec="black", mew=0.5)
                ax.annotate(f"{cell.threshold:.2f}", (cell.recall, cell.precision), fontsize=7,
                            xytext=(4, -10), textcoords="offset points")
        ax.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title=names[i])
        if any(cell.curve is not None for cell in row):
            ax.legend(fontsize=7, loc="lower left")
        else:
            ax.text(0.5, 0.5, "no predictions", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(f"PR per distance bin ({calibration.settings.match_distance:g} m match): "
                 f"star = calibrated threshold, circle = baseline ({calibration.baseline_label})", fontsize=10)
    fig.subplots_adjust(left=0.07, right=0.97, bottom=0.09, top=0.88, hspace=0.5, wspace=0.3)
    with replacing(path) as temporary:
        fig.savefig(temporary, dpi=110, format="png")
    return Path(path)


def write_calibration_report(out_dir: str | Path, calibration: Calibration,
                             comparisons: list[ThresholdComparison] = (), *, plots: bool = True,
                             extra: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write the report files (module doc) into ``out_dir`` (which must exist); returns them by kind.

    ``extra`` adds top-level entries to ``calibration.json`` (e.g. the input files)."""
    out_dir = Path(out_dir)
    content = {**dict(extra or {}), **calibration.to_dict(), "comparisons": [c.to_dict() for c in comparisons]}
    files = {
        "json": write_text(out_dir / JSON_NAME, json.dumps(content, indent=1, allow_nan=False)),
        "markdown": write_text(out_dir / MARKDOWN_NAME, calibration_markdown(calibration, list(comparisons))),
        "params": write_text(out_dir / PARAMS_NAME, yaml.safe_dump(thresholds_params(calibration.thresholds),
                                                                   sort_keys=False)),
    }
    if plots:
        files["plot"] = render_calibration(calibration, out_dir / PLOT_NAME)
    return files


@dataclass(frozen=True)
class CalibrationBoxes:
    """A prediction / GT box-file pair read for a calibration.

    Attributes:
        preds, gts: sample token -> boxes, the same samples in the GT file's order.
        class_names: the model's classes: the prediction file's ``meta.class_names``, else the
            GT file's, else ``default_classes``, else the GT classes found (sorted).
        view: the post-processing view the predictions came from (``meta.view``; ``""`` if unknown).
    """

    preds: dict[str, SampleBoxes]
    gts: dict[str, SampleBoxes]
    class_names: tuple[str, ...]
    view: str

    def split(self, tokens: Sequence[str]) -> tuple[dict[str, SampleBoxes], dict[str, SampleBoxes]]:
        """Predictions and GT of ``tokens`` only."""
        return {t: self.preds[t] for t in tokens}, {t: self.gts[t] for t in tokens}


def read_calibration_boxes(predictions: str | Path, ground_truth: str | Path,
                           default_classes: Sequence[str] | None = None) -> CalibrationBoxes:
    """Read both files (module doc of :mod:`~centerpoint_deploy.evaluate.io` for the layout).

    Raises:
        EvaluationError: an unreadable file, bad ``meta.class_names``, or other samples in each.
    """
    preds, pred_meta = load_boxes(predictions, "predictions")
    gts, gt_meta = load_boxes(ground_truth, "ground_truth")
    names = None
    for meta in (pred_meta, gt_meta):
        names = meta.get("class_names")
        if names:
            if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
                raise EvaluationError(f"meta.class_names must be a list of class names, got {names!r}")
            break
    if not names:
        names = list(default_classes) if default_classes else sorted({n for b in gts.values() for n in b.names.tolist()})
    if set(preds) != set(gts):
        raise EvaluationError(f"{predictions} and {ground_truth} hold other samples ({len(preds)} and {len(gts)}; "
                              f"{len(set(preds) ^ set(gts))} in one only)")
    return CalibrationBoxes({t: preds[t] for t in gts}, dict(gts), tuple(names), str(pred_meta.get("view", "")))


def calibrate_boxes(preds: Mapping[str, SampleBoxes], gts: Mapping[str, SampleBoxes], class_names: Sequence[str],
                    out_dir: str | Path, settings: CalibrationSettings, *,
                    holdout: tuple[Mapping[str, SampleBoxes], Mapping[str, SampleBoxes]] | None = None,
                    baseline: ScoreThresholds | None = None, plots: bool = True,
                    extra: Mapping[str, Any] | None = None
                    ) -> tuple[Calibration, list[ThresholdComparison], dict[str, Path]]:
    """Calibrate on ``preds`` / ``gts``, compare with the baseline thresholds there and (``holdout``:
    other samples' predictions and GT) on held-out data, and write the report into ``out_dir``.

    Args:
        baseline: see :func:`~centerpoint_deploy.evaluate.calibrate.calibrate_thresholds`.
        extra: top-level entries added to ``calibration.json``.

    Returns:
        the calibration, the comparisons (calibration data first), and the written files.
    """
    calibration = calibrate_thresholds(preds, gts, class_names, settings, baseline)

    def compare(label: str, p: Mapping[str, SampleBoxes], g: Mapping[str, SampleBoxes]) -> ThresholdComparison:
        return ThresholdComparison(label, len(g), operating_point(p, g, calibration.baseline, settings.match_distance),
                                   operating_point(p, g, calibration.thresholds, settings.match_distance))

    comparisons = [compare("calibration frames", preds, gts)]
    if holdout is not None:
        comparisons.append(compare("held-out frames", *holdout))
    files = write_calibration_report(out_dir, calibration, comparisons, plots=plots, extra=extra)
    return calibration, comparisons, files
