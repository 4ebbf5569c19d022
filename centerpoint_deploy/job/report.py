"""The main job's report: ``results.json``, ``report.md`` and a self-contained ``report.html``.

Every number in the report comes from :meth:`JobResult.to_dict` (what ``results.json``
holds), formatted as :func:`fmt` does: mAP / NDS / errors with 4 decimals, latency in ms
with 1. The detailed per-stage reports stay in their folders and are linked.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml
from rich.table import Table as RichTable

from centerpoint_deploy.benchmark.render import SUMMARY_HEADER, stage_rows, summary_rows
from centerpoint_deploy.benchmark.results import machine_info
from centerpoint_deploy.evaluate.data_classes import DetectionMetrics
from centerpoint_deploy.evaluate.report import SUMMARY_KEYS, summary_header
from centerpoint_deploy.job.document import Block, Bullets, Code, Figure, Heading, Links, Paragraph, Table, to_html, to_markdown
from centerpoint_deploy.job.log import JobLog
from centerpoint_deploy.job.result import JobResult
from centerpoint_deploy.outputs import write_text
from centerpoint_deploy.verify.boxes import flips_text
from centerpoint_deploy.verify.run import BackendResult

REPORT_FILES = {"json": "results.json", "markdown": "report.md", "html": "report.html"}


def fmt(value: float | None, digits: int = 4) -> str:
    """``value`` with ``digits`` decimals; ``-`` for a missing or NaN value."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def summary_header_and_rows(result: JobResult) -> tuple[list[str], list[list[str]]]:
    """One row per backend: mAP, NDS, verification verdict, median end-to-end latency (ms)."""
    rows = [[name, fmt(s["mAP"]), fmt(s["NDS"]), s["verification"], fmt(s["latency_p50_ms"], 1)]
            for name, s in result.summary().items()]
    return ["backend", "mAP", "NDS", "verification", "p50 latency (ms)"], rows


def _overview(result: JobResult) -> list[Block]:
    inputs = result.inputs
    verdict = {None: "not run", True: "PASS", False: "FAIL"}[result.verification_passed]
    blocks: list[Block] = [
        Heading("CenterPoint deploy report", 1),
        Paragraph(f"Model `{inputs.get('config', result.settings.config)}` from `{inputs.get('checkpoint', '-')}` on "
                  f"`{inputs.get('dataset', '-')}` ({len(inputs.get('evaluated_frames', []))} of "
                  f"{inputs.get('dataset_frames', '-')} frames evaluated), device `{inputs['device']}`. "
                  f"Verification: {verdict}."),
        Heading("Summary"),
        Table(*summary_header_and_rows(result)),
    ]
    if result.metric_config is not None:
        ranges = ", ".join(f"{name} {r:g} m" for name, r in result.metric_config.class_range.items())
        blocks.append(Paragraph(f"Evaluation class ranges: {ranges}."))
    blocks += [Heading("Steps"),
               Table(["#", "step", "status", "time (s)", "note"],
                     [[str(s.number), s.title, s.status, f"{s.seconds:.1f}", s.note] for s in result.steps])]
    return blocks


def _export_section(result: JobResult) -> list[Block]:
    if result.export is None or result.manifest is None:
        return []
    manifest = result.manifest
    deploy_dir = manifest.deploy_dir
    files = sorted(set(manifest.files) | {e.file for e in manifest.engines.values()})
    blocks: list[Block] = [
        Heading("Export"),
        Paragraph(f"Deploy directory `{deploy_dir}`: opset {manifest.opset}, rot_y_axis_reference="
                  f"{manifest.rot_y_axis_reference}, simplified={manifest.simplified}, "
                  f"{manifest.num_features} features per point."),
        Table(["file", "size (KiB)"], [[name, f"{(deploy_dir / name).stat().st_size / 1024:.1f}"] for name in files]),
        Table(["export check", "max |ONNX Runtime − PyTorch|"],
              [[name, f"{diff:.3g}"] for name, diff in result.export.max_abs_diff.items()]),
    ]
    problems = [f"{part}: {problem}" for part, found in result.export.tensorrt_problems.items() for problem in found]
    if problems:
        blocks += [Paragraph("Operators TensorRT's ONNX parser would refuse:"), Bullets(problems)]
    for part, engine in manifest.engines.items():
        blocks.append(Paragraph(f"TensorRT {engine.tensorrt_version} {part} engine `{engine.file}` ({engine.precision})."))
    return blocks


def _stage_summary(result: BackendResult) -> list[list[str]]:
    """Per stage of one backend: frames passed, worst max |d| (and which output), verdict."""
    rows = []
    for stage in ("encoder", "head"):
        comparisons = [c for frame in result.frames for c in getattr(frame, stage)]
        if not comparisons:
            continue
        finite = [c for c in comparisons if not math.isnan(c.max_abs)]
        worst = max(finite, key=lambda c: c.max_abs) if finite else comparisons[0]
        passed = sum(all(getattr(frame, stage)) for frame in result.frames)
        rows.append([stage, f"{passed}/{len(result.frames)}", f"{worst.max_abs:.3g} ({worst.name})",
                     "PASS" if passed == len(result.frames) else "FAIL"])
    for stage, attr in (("boxes (head on reference input)", "boxes"), ("boxes (end to end)", "end_to_end")):
        boxes = [getattr(frame, attr) for frame in result.frames]
        if not boxes:
            continue
        centre = max((b.max_center for b in boxes if not math.isnan(b.max_center)), default=math.nan)
        matched = min(b.matched_share for b in boxes)
        passed = sum(bool(b) for b in boxes)
        rows.append([stage, f"{passed}/{len(boxes)}", f"centre {centre:.3g} m, matched {matched:.1%}{flips_text(boxes)}",
                     "PASS" if passed == len(boxes) else "FAIL"])
    return rows


def _verification_caption(backend: str, plot: Path) -> str:
    """Caption of a plot ``verify.report.write_reports`` wrote (``bev_diff_*`` or ``bisection_*_<part>``)."""
    if plot.stem.startswith("bev_diff"):
        return f"{backend}: largest |{backend} − PyTorch| over the BEV grid (worst head output)"
    if plot.stem.startswith("bisection"):
        return f"{backend}: error growth per layer of the {plot.stem.rsplit('_', 1)[-1]} graph"
    return f"{backend}: {plot.stem}"


def _verification_section(result: JobResult) -> list[Block]:
    blocks: list[Block] = [Heading("Verification")]
    if not result.verification:
        return blocks + [Paragraph("Not run.")]
    for name, report in result.verification.items():
        tol = report.tolerances.default
        backend = report.backends[name]
        blocks += [
            Heading(f"{name} vs PyTorch: {'PASS' if report.passed else 'FAIL'}", 3),
            Paragraph(f"{len(backend.frames)} frame(s), every element within atol {tol.atol:g} + rtol {tol.rtol:g}·|ref| "
                      f"(each stage fed the reference's own input); boxes matched within "
                      f"{report.box_tolerance.center:g} m centre, {report.box_tolerance.score:g} score."),
            Table(["stage", "frames passed", "worst max |d|", "verdict"], _stage_summary(backend)),
        ]
        failures = backend.failures()
        if failures:
            blocks += [Paragraph("Failures:"), Bullets(failures[:20])]
        files = result.verification_files.get(name, {})
        blocks += [Figure(path, _verification_caption(name, path)) for path in files.values() if path.suffix == ".png"]
        if files:
            blocks.append(Links([(f"full {name} verification report", files["markdown"]), ("JSON", files["json"])]))
    return blocks


def _metrics_rows(metrics: dict[str, DetectionMetrics]) -> list[list[str]]:
    return [[name, *(fmt(m.summary()[key]) for key in SUMMARY_KEYS)] for name, m in metrics.items()]


def _views_blocks(metrics: dict[str, DetectionMetrics]) -> list[Block]:
    """mAP / NDS of each backend with mmdet3d's and the node's post-processing (``<backend>@autoware``)."""
    rows = []
    for name, reference in metrics.items():
        node = metrics.get(f"{name}@autoware")
        if node is None:
            continue
        ref, car = reference.summary(), node.summary()
        rows.append([name, fmt(ref["mAP"]), fmt(car["mAP"]), f"{car['mAP'] - ref['mAP']:+.4f}",
                     fmt(ref["NDS"]), fmt(car["NDS"]), f"{car['NDS'] - ref['NDS']:+.4f}"])
    if not rows:
        return []
    return [Heading("What training reports vs what the car outputs", 3),
            Paragraph("The same network outputs post-processed as mmdet3d does (top-K, circle NMS) and as the "
                      "Autoware node does (per-cell argmax, per-class and distance thresholds, yaw-norm, circle "
                      "NMS 0.5 m, IoU-BEV NMS, class remapper); per class and distance bucket in views.md."),
            Table(["backend", "mAP mmdet3d", "mAP autoware", "ΔmAP", "NDS mmdet3d", "NDS autoware", "ΔNDS"], rows)]


def _evaluation_section(result: JobResult) -> list[Block]:
    blocks: list[Block] = [Heading("Evaluation")]
    if not result.metrics or result.metric_config is None:
        return blocks + [Paragraph("Not run.")]
    config = result.metric_config
    folder = result.out_dir / "evaluation"
    classes = list(config.class_names)
    first = next(iter(result.metrics.values()))
    blocks += [
        Paragraph(f"nuScenes-style detection metrics over {len(result.inputs['evaluated_frames'])} frames: centre-distance "
                  f"matching at {', '.join(f'{t:g}' for t in config.dist_ths)} m, TP errors at {config.dist_th_tp:g} m."),
        Table(["backend", *summary_header()], _metrics_rows(result.metrics)),
        Heading("AP per class (mean over distance thresholds)", 3),
        Table(["class", "#GT", *result.metrics], [[c, str(first.num_gt.get(c, 0)),
                                                   *(fmt(m.mean_dist_aps[c]) for m in result.metrics.values())]
                                                  for c in classes]),
    ]
    blocks += _views_blocks(result.metrics)
    blocks += [Heading("Precision-recall curves", 3)]
    blocks += [Figure(folder / name / "pr_curves.png", f"{name}: precision-recall per class")
               for name in result.metrics if (folder / name / "pr_curves.png").is_file()]
    # evaluate_backends names them <index:05d>_<token>.png; earlier runs into the same folder may have left others
    bev = [path for index in result.inputs.get("bev_frames", [])
           for path in sorted((folder / "bev").glob(f"{index:05d}_*.png"))]
    if bev:
        blocks += [Heading("Bird's-eye views (GT and every backend's predictions)", 3)]
        blocks += [Figure(path, f"frame {path.stem}") for path in bev]
    blocks.append(Links([("backend comparison", folder / "comparison.md")]
                        + ([("post-processing views", folder / "views.md")] if (folder / "views.md").is_file() else [])
                        + [(f"{name} metrics", folder / name / "metrics.md") for name in result.metrics]))
    return blocks


def _calibration_section(result: JobResult) -> list[Block]:
    blocks: list[Block] = [Heading("Score-threshold calibration")]
    outcome = result.calibration
    if outcome is None:
        return blocks + [Paragraph("Not run.")]
    calibration, judged = outcome.calibration, outcome.judged
    settings = calibration.settings
    baseline_f1, calibrated_f1 = judged.cell_f1()
    goal = ("max F1" if settings.target_precision is None else f"precision >= {settings.target_precision:g}")
    verdict = ("written into the bundle's `ml_package.param.yaml`" if outcome.written
               else f"**not written** ({outcome.reason}); the bundle keeps its thresholds")
    blocks += [
        Paragraph(f"Per class and distance bin, the node's minimum confidence ({goal} at a "
                  f"{settings.match_distance:g} m centre-distance match) from the ONNX Runtime backend's boxes with "
                  f"the node's post-processing at a low score floor, on {calibration.num_samples} frames; judged on "
                  f"the {judged.label} ({judged.num_samples}): mean F1 per class x bin cell {fmt(baseline_f1)} with "
                  f"the bundle's thresholds, {fmt(calibrated_f1)} calibrated; pooled F1 {fmt(judged.default.f1())} -> "
                  f"{fmt(judged.calibrated.f1())}. The thresholds are {verdict}. The evaluation's autoware view "
                  "above ran with the thresholds the bundle had before."),
        Table(["class", *settings.bin_names],
              [[name, *(f"{cell.baseline:.3f} → {cell.threshold:.3f}" if cell.calibrated else f"{cell.baseline:.3f}"
                        for cell in row)] for name, row in zip(calibration.class_names, calibration.cells)]),
    ]
    if "plot" in outcome.files:
        blocks.append(Figure(outcome.files["plot"], "precision over recall per distance bin: the chosen threshold "
                                                   "(star) and the bundle's (circle)"))
    return blocks + [Links([("calibration report", outcome.files["markdown"]), ("JSON", outcome.files["json"])])]


def _benchmark_section(result: JobResult) -> list[Block]:
    blocks: list[Block] = [Heading("Benchmark")]
    report = result.benchmark
    if report is None:
        return blocks + [Paragraph("Not run.")]
    folder = result.out_dir / "benchmark"
    machine = report.machine
    header, rows = stage_rows(report)
    blocks += [
        Paragraph(f"{report.frame.get('num_points', '-')} points, {report.settings.get('warmup', '-')} warm-up and "
                  f"{report.settings.get('iterations', '-')} timed runs per backend on "
                  f"{machine.get('gpu') or machine.get('cpu')} ({machine.get('torch_threads')} torch threads). "
                  "Latency in ms" + ("; on the CPU the end-to-end figure is the staged run's total (one run "
                                     "serves both: nothing to synchronise)." if not machine.get("gpu") else ".")),
        Table(SUMMARY_HEADER, summary_rows(report)),
        Heading("Per-stage median latency (ms)", 3),
        Table(header, rows),
    ]
    if report.skipped:
        blocks += [Paragraph("Skipped:"), Bullets([f"{name}: {why}" for name, why in report.skipped.items()])]
    stages_plot = folder / "stages.png"  # benchmark.render.write_report's per-stage bars
    if stages_plot.is_file():
        blocks.append(Figure(stages_plot, "per-stage median latency of every backend (stacked), end-to-end median marked"))
    return blocks + [Links([("benchmark report", folder / "benchmark.md")])]


def resolved_settings(result: JobResult) -> dict[str, Any]:
    """The settings with their defaults replaced by what the job used (checkpoint, dataset,
    device, output folder), so the report never shows ``checkpoint: null`` or ``device: auto``."""
    settings = result.settings.to_dict()
    settings.update({key: str(result.inputs[key]) for key in ("checkpoint", "dataset", "device")
                     if result.inputs.get(key) is not None})
    settings["out"] = str(result.out_dir)
    return settings


def software(machine: dict[str, Any]) -> str:
    """One line naming the machine and the library versions (``not installed`` for a missing one)."""
    hardware = machine.get("gpu") or f"{machine.get('cpu')} ({machine.get('cpu_cores')} cores)"
    names = {"python": "Python", "torch": "torch", "onnxruntime": "ONNX Runtime", "tensorrt": "TensorRT",
             "cuda": "CUDA", "cudnn": "cuDNN", "driver": "driver"}
    versions = [f"{label} {machine[key] if machine[key] is not None else 'not installed'}"
                for key, label in names.items() if key in machine]
    return f"{hardware}; {', '.join(versions)}."


def build_report(result: JobResult, machine: dict[str, Any]) -> list[Block]:
    """The report's blocks: overview, export, verification, evaluation, calibration, benchmark, software, settings."""
    return [*_overview(result), *_export_section(result), *_verification_section(result),
            *_evaluation_section(result), *_calibration_section(result), *_benchmark_section(result),
            Heading("Software"), Paragraph(software(machine)),
            Heading("Settings (as used: defaults resolved)"),
            Code(yaml.safe_dump(resolved_settings(result), sort_keys=False)),
            Links([("results (JSON)", result.out_dir / REPORT_FILES["json"]), ("log", result.out_dir / "deploy.log")])]


def write_job_report(result: JobResult) -> dict[str, Path]:
    """Write ``results.json``, ``report.md`` and ``report.html`` into ``result.out_dir``.

    Returns:
        ``{"json", "markdown", "html", "log"}`` -> path.
    """
    out = result.out_dir
    files = {kind: out / name for kind, name in REPORT_FILES.items()}
    machine = result.benchmark.machine if result.benchmark is not None else machine_info(result.inputs["device"])
    write_text(files["json"], json.dumps({**result.to_dict(), "machine": machine}, indent=1, default=_json_default))
    blocks = build_report(result, machine)
    write_text(files["markdown"], to_markdown(blocks, out))
    write_text(files["html"], to_html(blocks, "CenterPoint deploy report", out))
    files["log"] = out / "deploy.log"
    return files


def print_summary(result: JobResult, log: JobLog) -> None:
    """The summary table, the verification verdict and the report's path, on the terminal and in the log."""
    header, rows = summary_header_and_rows(result)
    table = RichTable(title="deploy summary", title_justify="left")
    for column in header:
        table.add_column(column, justify="left" if column in ("backend", "verification") else "right")
    for row in rows:
        table.add_row(*row, style="red" if row[3] == "FAIL" else None)
    log.print(table)
    verdict = {None: "[yellow]verification not run[/]", True: "[bold green]verification PASSED[/]",
               False: "[bold red]verification FAILED[/]"}[result.verification_passed]
    log.print(verdict)
    if "html" in result.files:
        log.print(f"report: {result.files['html']} (also {result.files['markdown'].name}, {result.files['json'].name})",
                  markup=False)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")
