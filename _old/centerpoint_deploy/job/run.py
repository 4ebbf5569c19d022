"""The main job: export one CenterPoint model, verify, evaluate and benchmark it, write one report.

Numbered steps, each one call of a library function:

1. load the model config                    ``config.load_config``
2. open the dataset                         ``data.open_dataset``
3. export ONNX (checked against PyTorch)    ``export.onnx_export.export_onnx``
4. build TensorRT engines                   ``export.tensorrt_build.build_deploy_engines``
   (when ``import tensorrt`` works and the device is CUDA; else skipped, saying why)
5. verify each exported backend             ``verify.run.verify_backends`` (one step per backend)
6. evaluate every backend                   ``evaluate.runner.evaluate_backends``
7. calibrate the bundle's score thresholds  ``evaluate.calibrate_bundle.calibrate_bundle``
8. benchmark every backend                  ``benchmark.run.benchmark_backends``
9. write the report                         ``job.report.write_job_report``

Everything printed also goes to ``<out>/deploy.log``. A failed verification does not stop the
job (evaluation and latency are still worth reading); :attr:`JobResult.passed` says so and
the CLI exits non-zero after the report is written. An error in a step is logged and raised.

Under ``torchrun`` rank 0 runs every step; the other ranks load the config and dataset, wait
for rank 0's export and verification, then evaluate their share of the frames with it
(:mod:`centerpoint_deploy.evaluate.distributed`); rank 0 alone writes files.
"""

from __future__ import annotations

import time
import traceback
import warnings
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch
from rich.console import Console
from rich.markup import escape
from torch import Tensor

from centerpoint_deploy.benchmark.run import benchmark_backends
from centerpoint_deploy.config import ModelConfig, load_config
from centerpoint_deploy.data import open_dataset
from centerpoint_deploy.data.loader import load_clouds
from centerpoint_deploy.errors import CenterPointError
from centerpoint_deploy.evaluate.distributed import RankGroup
from centerpoint_deploy.evaluate.calibrate import CalibrationSettings
from centerpoint_deploy.evaluate.calibrate_bundle import BundleCalibration, calibrate_bundle, split_samples
from centerpoint_deploy.evaluate.calibrate_report import read_calibration_boxes
from centerpoint_deploy.evaluate.runner import evaluate_backends, fingerprint_files
from centerpoint_deploy.export.bundle import node_precision, record_check
from centerpoint_deploy.export.bundle_schema import BUNDLE_VERSION
from centerpoint_deploy.export.manifest import ONNX_FILES, CheckRecord, Manifest, utc_now
from centerpoint_deploy.export.onnx_export import ExportResult, export_onnx
from centerpoint_deploy.export.tensorrt_build import build_deploy_engines
from centerpoint_deploy.job.inputs import (job_checkpoint, job_dataset, job_device, job_metric_config, job_out_dir,
                                           job_tensorrt, model_reach, spread_indices, spread_subset)
from centerpoint_deploy.job.log import JobLog
from centerpoint_deploy.job.report import print_summary, write_job_report
from centerpoint_deploy.job.result import CANDIDATE, REFERENCE, JobResult, StepRecord
from centerpoint_deploy.job.settings import DeploySettings, ExportSettings
from centerpoint_deploy.model import build_model
from centerpoint_deploy.postprocess.modes import CALIBRATION_VIEW, PostprocessView, default_views
from centerpoint_deploy.progress import Progress
from centerpoint_deploy.terminal import progress_bars
from centerpoint_deploy.stages import Pipeline
from centerpoint_deploy.variant import VariantSpec, build_detector
from centerpoint_deploy.verify.report import print_report, write_reports
from centerpoint_deploy.verify.run import verify_backends
from centerpoint_deploy.verify.tolerances import judged_precision, verification_tolerances

LOG_FILE = "deploy.log"
_T = TypeVar("_T")


class _Steps:
    """Numbers, times and logs the job's steps; collects the warnings each one raises."""

    def __init__(self, log: JobLog, total: int) -> None:
        self.log = log
        self.total = total
        self.records: list[StepRecord] = []
        self._bars: ExitStack | None = None
        self._report: Progress | None = None

    def progress(self, step: str, done: int, total: int | None) -> None:
        """The running step's :data:`~centerpoint_deploy.progress.Progress` callback: bars with an ETA
        on the terminal, opened on the first call (a step that draws its own bar never opens them)."""
        if self._report is None:
            self._bars = ExitStack()
            self._report = self._bars.enter_context(progress_bars(self.log.console))
        self._report(step, done, total)

    def _close_bars(self) -> None:
        if self._bars is not None:
            self._bars.close()
        self._bars, self._report = None, None

    def run(self, title: str, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        number = len(self.records) + 1
        self.log.rule(f"[{number}/{self.total}] {title}")
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                try:
                    value = fn(*args, **kwargs)
                finally:
                    self._close_bars()
            except Exception as exc:
                self._log_warnings(caught)
                seconds = time.perf_counter() - start
                self.records.append(StepRecord(number, title, "failed", seconds, str(exc)))
                self.log.print(f"[red]failed[/] after {seconds:.1f} s")
                raise
        self._log_warnings(caught)
        seconds = time.perf_counter() - start
        self.records.append(StepRecord(number, title, "done", seconds))
        self.log.print(f"[green]done[/] in {seconds:.1f} s")
        return value

    def skip(self, title: str, reason: str) -> None:
        number = len(self.records) + 1
        self.log.rule(f"[{number}/{self.total}] {title}")
        self.log.print(f"[yellow]skipped:[/] {escape(reason)}")
        self.records.append(StepRecord(number, title, "skipped", 0.0, reason))

    def _log_warnings(self, caught: list[warnings.WarningMessage]) -> None:
        counts = Counter(f"{w.category.__name__}: {w.message}" for w in caught)
        for text, count in counts.items():
            self.log.print(f"[yellow]warning[/] {escape(text)}" + (f" (x{count})" if count > 1 else ""))


def _plan(settings: DeploySettings, candidates: list[str]) -> int:
    """Number of steps the job shows (disabled ones are listed as skipped)."""
    verify_steps = len(candidates) if settings.verify.enabled else 1
    return 4 + verify_steps + 4


def _export(config: ModelConfig, checkpoint: Path, deploy_dir: Path, export: ExportSettings,
            device: torch.device, sample: Tensor, progress: Progress | None = None) -> ExportResult:
    model = build_model(config, checkpoint=checkpoint, device=device)
    return export_onnx(model, config, deploy_dir, opset=export.opset, rot_y_axis_reference=export.rot_y_axis_reference,
                       simplify=export.simplify, check_sample=sample, atol=export.atol, checkpoint=checkpoint,
                       autoware_format=export.autoware_format, trt_precision=node_precision(export.tensorrt_precision),
                       progress=progress)


def _record_checks(deploy_dir: Path, result: JobResult) -> Manifest:
    """Write what this job verified and measured on the bundle into its ``deploy_metadata.yaml``."""
    manifest = result.manifest
    frames = len(result.inputs.get("verified_frames", []))
    for kind, report in result.verification.items():
        manifest = record_check(deploy_dir, f"verification.{kind}", CheckRecord(
            report.passed, utc_now(), f"{kind} against {REFERENCE} on {frames} frames (tensors and boxes)"))
    evaluated = len(result.inputs.get("evaluated_frames", []))
    for kind, metrics in (result.metrics or {}).items():
        manifest = record_check(deploy_dir, f"evaluation.{kind}", CheckRecord(
            True, utc_now(), f"{kind} on {evaluated} frames", {"mAP": metrics.mean_ap, "NDS": metrics.nd_score}))
    return manifest


def _calibration_skip_reason(settings: DeploySettings) -> str:
    """Why the calibration step does not run (``""``: it runs)."""
    if not settings.calibrate.enabled:
        return "disabled (calibrate.enabled: false)"
    if not settings.evaluate.enabled:
        return "needs the evaluation (evaluate.enabled: false)"
    if settings.export.autoware_format != BUNDLE_VERSION:
        return f"a {settings.export.autoware_format} bundle holds no score thresholds"
    return ""


def _views(settings: DeploySettings, detectors: dict[str, Pipeline]) -> dict[str, list[PostprocessView]]:
    """Each backend's evaluation views: both default views, and for the bundle's ONNX Runtime
    backend the calibration view too when the calibration step will read it (the others'
    would only cost time)."""
    floor = None if _calibration_skip_reason(settings) else settings.calibrate.floor
    return {name: default_views(detector.config, params=detector.node_params,
                                calibration_floor=floor if name == CANDIDATE else None)
            for name, detector in detectors.items()}


def _calibrate(settings: DeploySettings, out_dir: Path, deploy_dir: Path, log: JobLog) -> BundleCalibration:
    """Calibrate the bundle's thresholds on the ONNX Runtime backend's node boxes at the floor, the
    last ``holdout_fraction`` of the evaluated frames held out (:class:`CalibrateSettings`)."""
    calibrate = settings.calibrate
    folder = out_dir / "evaluation"
    boxes = read_calibration_boxes(folder / f"{CANDIDATE}@{CALIBRATION_VIEW}" / "predictions.json",
                                   folder / "ground_truth.json")
    fit, held = split_samples(boxes.preds, calibrate.holdout_fraction)
    outcome = calibrate_bundle(*boxes.split(fit), boxes.class_names, deploy_dir, out_dir / "calibration",
                               CalibrationSettings(target_precision=calibrate.target_precision, min_gt=calibrate.min_gt,
                                                   min_predictions=calibrate.min_predictions),
                               holdout=boxes.split(held) if held else None)
    baseline_f1, calibrated_f1 = outcome.judged.cell_f1()
    verdict = "written into ml_package.param.yaml" if outcome.written else f"not written: {outcome.reason}"
    log.print(f"calibrated on {len(fit)} frames, judged on the {outcome.judged.label} ({outcome.judged.num_samples}): "
              f"mean F1 per class x bin cell {baseline_f1:.4f} -> {calibrated_f1:.4f}; {verdict}", markup=False)
    return outcome


def run_deploy_job(settings: DeploySettings, console: Console | None = None,
                   group: RankGroup | None = None) -> JobResult | None:
    """Run the main job (module doc) and return what it found; reports are under the output folder.

    Args:
        settings: see :class:`~centerpoint_deploy.job.settings.DeploySettings`.
        console: terminal output (progress, tables); default stderr.
        group: this process's rank under ``torchrun`` (default: a single process); ranks other
            than 0 only evaluate their share of the frames and return None.

    Raises:
        CenterPointError: bad inputs or a step that could not run (written to the log first;
            the caller reports it on the terminal).
    """
    console = console or Console(stderr=True)
    group = group or RankGroup()
    if not group.is_main:
        with ExitStack() as open_backends:
            _evaluate_share(settings, group, open_backends)
        return None
    out_dir = job_out_dir(settings.out)
    with JobLog(console, out_dir / LOG_FILE) as log:
        try:
            with ExitStack() as open_backends:
                return _run(settings, out_dir, log, open_backends, group)
        except CenterPointError as exc:
            log.to_file(f"error: {exc}")
            raise
        except Exception:
            log.to_file(traceback.format_exc())
            raise


def _detectors(kinds: list[str], config: ModelConfig, checkpoint: Path, deploy_dir: Path, device: torch.device,
               open_backends: ExitStack) -> tuple[dict[str, VariantSpec], dict[str, Pipeline]]:
    """The reference's and each candidate's variant and detector (closed by ``open_backends``)."""
    specs = {kind: VariantSpec.parse(kind, device=device) for kind in kinds}
    detectors: dict[str, Pipeline] = {}
    for kind, spec in specs.items():
        detectors[kind] = build_detector(spec, config, checkpoint=checkpoint if spec.runs_checkpoint else None,
                                         deploy_dir=None if spec.runs_checkpoint else deploy_dir)
        open_backends.callback(detectors[kind].close)
    return specs, detectors


def _fingerprints(kinds: list[str], checkpoint: Path, deploy_dir: Path) -> dict[str, str]:
    return {kind: fingerprint_files(checkpoint if kind == REFERENCE else deploy_dir) for kind in kinds}


def _evaluate_share(settings: DeploySettings, group: RankGroup, open_backends: ExitStack) -> None:
    """A rank other than 0: evaluate this rank's share of the frames once rank 0 has exported (module doc)."""
    device = group.device(job_device(settings.device))
    config = load_config(settings.config)
    checkpoint = job_checkpoint(settings.checkpoint, settings.config)
    dataset = open_dataset(job_dataset(settings.dataset), class_names=config.class_names,
                           sweeps_num=config.points.sweeps_num, load_dim=config.points.load_dim)
    out_dir, kinds, evaluated = group.exchange(None)[0]        # rank 0: exported and verified
    if not settings.evaluate.enabled:
        return
    _, detectors = _detectors(kinds, config, checkpoint, out_dir / "deploy", device, open_backends)
    evaluate_backends(dataset, detectors, out_dir / "evaluation", job_metric_config(
        settings.evaluate.metric, settings.evaluate.class_range, config), frames=evaluated,
        fingerprints=_fingerprints(kinds, checkpoint, out_dir / "deploy"), console=Console(quiet=True), group=group,
        views=_views(settings, detectors))


def _run(settings: DeploySettings, out_dir: Path, log: JobLog, open_backends: ExitStack,
         group: RankGroup) -> JobResult:
    """The steps, in order; backends opened along the way are closed by ``open_backends``."""
    device = group.device(job_device(settings.device))
    build_engines, no_engines_reason = job_tensorrt(settings.export.tensorrt, device)
    candidates = [CANDIDATE] + (["tensorrt"] if build_engines else [])
    log.print(f"[bold]centerpoint-deploy deploy[/] -> {escape(str(out_dir))} (device {device})")
    steps = _Steps(log, _plan(settings, candidates))
    result = JobResult(settings, out_dir, {"device": str(device)}, backends=[REFERENCE, *candidates],
                       steps=steps.records)

    config = steps.run("Load the model config", load_config, settings.config)
    checkpoint = job_checkpoint(settings.checkpoint, settings.config)
    dataset_spec = job_dataset(settings.dataset)
    log.print(f"model {config.name}: grid {config.grid_size[0]} x {config.grid_size[1]}, "
              f"{config.num_features} features; checkpoint {checkpoint}", markup=False)
    dataset = steps.run("Open the dataset", open_dataset, dataset_spec, class_names=config.class_names,
                        sweeps_num=config.points.sweeps_num, load_dim=config.points.load_dim)
    evaluated = spread_indices(len(dataset), settings.evaluate.max_frames)
    verified = spread_subset(evaluated, settings.verify.frames)
    drawn = spread_subset(evaluated, settings.evaluate.bev_frames)
    result.inputs.update(config=config.name, config_spec=settings.config, checkpoint=str(checkpoint),
                         dataset=dataset_spec, dataset_frames=len(dataset), evaluated_frames=evaluated,
                         verified_frames=verified, bev_frames=drawn)
    log.print(f"{len(dataset)} frames in {dataset_spec}; evaluating {len(evaluated)}, verifying {len(verified)}",
              markup=False)
    frames = load_clouds(dataset, verified, config.points.use_dim)

    deploy_dir = out_dir / "deploy"
    result.export = steps.run("Export ONNX", _export, config, checkpoint, deploy_dir, settings.export,
                              device, frames[0], progress=steps.progress)
    result.manifest = result.export.manifest
    for name, diff in result.export.max_abs_diff.items():
        log.print(f"  max |onnxruntime - pytorch| {name}: {diff:.3g}")
    if build_engines:
        result.manifest = steps.run("Build TensorRT engines", build_deploy_engines, deploy_dir,
                                    precision=settings.export.tensorrt_precision,
                                    workspace_bytes=int(settings.export.workspace_gb * (1 << 30)))
    else:
        steps.skip("Build TensorRT engines", no_engines_reason)

    specs, detectors = _detectors([REFERENCE, *candidates], config, checkpoint, deploy_dir, device, open_backends)

    if settings.verify.enabled:
        bisect_onnx = {part: deploy_dir / name for part, name in ONNX_FILES.items()} \
            if settings.verify.bisect else None
        for kind in candidates:
            precision = judged_precision([specs[kind]], result.manifest)
            tolerances, box_tolerance = verification_tolerances(precision, atol=settings.verify.atol,
                                                                rtol=settings.verify.rtol)
            report = steps.run(f"Verify {kind} against PyTorch ({precision} tolerances)", verify_backends,
                               detectors[REFERENCE], {kind: detectors[kind]}, frames, tolerances,
                               box_tolerance, bisect_onnx=bisect_onnx, bisect_device=device,
                               progress=steps.progress)
            for target in log.consoles:
                print_report(report, target)
            result.verification[kind] = report
            result.verification_files[kind] = write_reports(report, out_dir / "verification" / kind)
    else:
        steps.skip("Verify", "disabled (verify.enabled: false)")
    group.exchange((out_dir, [REFERENCE, *candidates], evaluated))   # the other ranks evaluate with these

    if settings.evaluate.enabled:
        result.metric_config = job_metric_config(settings.evaluate.metric, settings.evaluate.class_range, config)
        ranges = sorted(set(result.metric_config.class_range.values()))
        log.print(f"metric {settings.evaluate.metric}: class range {', '.join(f'{r:g}' for r in ranges)} m "
                  f"(the model's grid reaches {model_reach(config):g} m from the LiDAR)")
        result.metrics = steps.run("Evaluate", evaluate_backends, dataset, detectors, out_dir / "evaluation",
                                   result.metric_config, frames=evaluated,
                                   fingerprints=_fingerprints(list(specs), checkpoint, deploy_dir),
                                   render_frames=drawn, console=log.console, group=group,
                                   views=_views(settings, detectors))
    else:
        steps.skip("Evaluate", "disabled (evaluate.enabled: false)")
    result.manifest = _record_checks(deploy_dir, result)

    skip_calibration = _calibration_skip_reason(settings)
    if skip_calibration:
        steps.skip("Calibrate score thresholds", skip_calibration)
    else:
        result.calibration = steps.run("Calibrate score thresholds", _calibrate, settings, out_dir, deploy_dir, log)
        result.manifest = result.calibration.manifest

    if settings.benchmark.enabled:
        result.benchmark = steps.run("Benchmark", benchmark_backends, detectors, specs, frames[0], out_dir / "benchmark",
                                     warmup=settings.benchmark.warmup,
                                     iterations=settings.benchmark.iterations, config_name=config.name,
                                     progress=steps.progress)
    else:
        steps.skip("Benchmark", "disabled (benchmark.enabled: false)")

    result.files = steps.run("Write the report", write_job_report, result)
    print_summary(result, log)
    return result

