"""What the main job did and found: its steps and every stage's results, serialisable to JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from centerpoint_deploy.benchmark.results import BenchmarkReport
from centerpoint_deploy.evaluate.calibrate_bundle import BundleCalibration
from centerpoint_deploy.evaluate.data_classes import DetectionMetrics, MetricConfig
from centerpoint_deploy.export.manifest import Manifest
from centerpoint_deploy.export.onnx_export import ExportResult
from centerpoint_deploy.job.settings import DeploySettings
from centerpoint_deploy.verify.run import VerificationReport

#: The backend every other one is verified against and compared with.
REFERENCE = "pytorch"
#: The backend that runs the bundle's ONNX files, always verified and evaluated (its boxes calibrate the thresholds).
CANDIDATE = "onnxruntime"


@dataclass
class StepRecord:
    """One numbered step of the job: ``status`` is ``done``, ``skipped`` or ``failed``."""

    number: int
    title: str
    status: str
    seconds: float
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "title": self.title, "status": self.status,
                "seconds": round(self.seconds, 3), "note": self.note}


@dataclass
class JobResult:
    """What the main job did and found.

    Attributes:
        settings: the settings it ran with.
        out_dir: output folder (reports, ``deploy/``, ``verification/``, ``evaluation/``,
            ``benchmark/``, ``deploy.log``).
        inputs: the resolved config name, checkpoint, dataset, device and frame indices.
        backends: backend kinds in order, the reference first.
        steps: every numbered step, skipped ones included.
        export: the ONNX export (``None`` only if the job stopped before it).
        manifest: the deploy directory's final manifest (engines included).
        verification: backend -> its verification against the reference (empty if disabled).
        verification_files: backend -> the files its verification report wrote (kind -> path).
        metric_config: the evaluation's metric settings (``None`` if disabled).
        metrics: backend -> detection metrics over the evaluated frames (empty if disabled).
        calibration: the bundle's score-threshold calibration (``None`` if it did not run).
        benchmark: latency of every backend (``None`` if disabled).
        files: report kind -> path (``json``, ``markdown``, ``html``, ``log``).
    """

    settings: DeploySettings
    out_dir: Path
    inputs: dict[str, Any]
    backends: list[str] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    export: ExportResult | None = None
    manifest: Manifest | None = None
    verification: dict[str, VerificationReport] = field(default_factory=dict)
    verification_files: dict[str, dict[str, Path]] = field(default_factory=dict)
    metric_config: MetricConfig | None = None
    metrics: dict[str, DetectionMetrics] = field(default_factory=dict)
    calibration: BundleCalibration | None = None
    benchmark: BenchmarkReport | None = None
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def verification_passed(self) -> bool | None:
        """``None`` when nothing was verified, else whether every backend passed."""
        if not self.verification:
            return None
        return all(report.passed for report in self.verification.values())

    @property
    def passed(self) -> bool:
        """False only when a verification ran and failed."""
        return self.verification_passed is not False

    def latency_p50_ms(self) -> dict[str, float]:
        """Backend -> median end-to-end latency (ms) from the benchmark (empty if it did not run)."""
        if self.benchmark is None:
            return {}
        return {r.name: r.end_to_end.p50 for r in self.benchmark.results}

    def summary(self) -> dict[str, dict[str, Any]]:
        """Backend -> ``{"mAP", "NDS", "verification", "latency_p50_ms"}`` (``None`` where not measured)."""
        latency = self.latency_p50_ms()
        out = {}
        for name in self.backends:
            metrics = self.metrics.get(name)
            if name == REFERENCE:
                verdict = "reference"
            elif name in self.verification:
                verdict = "PASS" if self.verification[name].passed else "FAIL"
            else:
                verdict = "not run"
            out[name] = {"mAP": metrics.mean_ap if metrics else None, "NDS": metrics.nd_score if metrics else None,
                         "verification": verdict, "latency_p50_ms": latency.get(name)}
        return out

    def to_dict(self) -> dict[str, Any]:
        """``results.json``: settings, inputs, steps, summary and each stage's full results."""
        return {
            "passed": self.passed,
            "verification_passed": self.verification_passed,
            "summary": self.summary(),
            "settings": self.settings.to_dict(),
            "inputs": self.inputs,
            "steps": [s.to_dict() for s in self.steps],
            "export": None if self.export is None else {
                "deploy_dir": str(self.export.manifest.deploy_dir),
                "max_abs_diff": self.export.max_abs_diff,
                "tensorrt_problems": {p: [str(x) for x in v] for p, v in self.export.tensorrt_problems.items()},
                "engines": {} if self.manifest is None else {p: e.precision for p, e in self.manifest.engines.items()},
            },
            "verification": {name: r.to_dict() for name, r in self.verification.items()},
            "metric_config": None if self.metric_config is None else self.metric_config.to_dict(),
            "metrics": {name: m.to_dict(include_curves=False) for name, m in self.metrics.items()},
            "calibration": None if self.calibration is None else {
                "written": self.calibration.written, "reason": self.calibration.reason,
                "comparisons": [c.to_dict() for c in self.calibration.comparisons],
                **self.calibration.calibration.to_dict(include_curves=False)},
            "benchmark": None if self.benchmark is None else self.benchmark.to_dict(),
        }
