"""Benchmark results: typed records that round-trip through JSON, and the machine they ran on."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from centerpoint_deploy.benchmark.timing import LatencyStats


@dataclass
class VariantResult:
    """Latency of one pipeline variant (backend, precision, options) on one frame.

    Attributes:
        name: label, e.g. ``"pytorch fp16 graph"``.
        backend: ``pytorch``, ``onnxruntime`` or ``tensorrt``.
        precision: ``fp32`` (TF32 off), ``tf32``, ``fp16`` or ``bf16``.
        options: the fast-path switches used (``channels_last``, ``cuda_graph``, ...).
        device: ``cpu`` or ``cuda``.
        stages: per-stage latency (ms) from the staged run, plus ``"sum of stages"``.
        end_to_end: points on the host -> boxes on the host, timed without per-stage marks on a
            GPU; on the CPU the staged run's totals (:mod:`~centerpoint_deploy.benchmark.run`).
        peak_memory_mb: ``torch.cuda.max_memory_allocated`` during the end-to-end run (MiB),
            None on the CPU (ONNX Runtime / TensorRT memory is not counted by torch).
        num_points, num_voxels, num_boxes: sizes of the frame, its pillars and the result.
        first_call_s: loading the backends and the first call (s): what a variant pays before
            its steady state (``torch.compile`` compiling, or reading its cache; CUDA graph
            capture; engine deserialisation). None when not measured.
    """

    name: str
    backend: str
    precision: str
    options: dict[str, Any]
    device: str
    stages: dict[str, LatencyStats]
    end_to_end: LatencyStats
    peak_memory_mb: float | None
    num_points: int
    num_voxels: int
    num_boxes: int
    first_call_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["stages"] = {k: v.to_dict() for k, v in self.stages.items()}
        out["end_to_end"] = self.end_to_end.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VariantResult":
        fields = dict(data)
        fields["stages"] = {k: _stats(v) for k, v in data["stages"].items()}
        fields["end_to_end"] = _stats(data["end_to_end"])
        return cls(**fields)


@dataclass
class ScalingPoint:
    """End-to-end latency of one variant at one size.

    Attributes:
        variant: the :attr:`VariantResult.name` it belongs to.
        axis: ``"points"`` (random points per frame), ``"sweeps"`` (points per frame of merged
            synthetic sweeps) or ``"grid"`` (BEV cells per side).
        value: the size on that axis.
        end_to_end: latency (ms).
        num_voxels: pillars of the frame.
    """

    variant: str
    axis: str
    value: int
    end_to_end: LatencyStats
    num_voxels: int

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "end_to_end": self.end_to_end.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ScalingPoint":
        return cls(**{**data, "end_to_end": _stats(data["end_to_end"])})


@dataclass
class BenchmarkReport:
    """Everything one ``benchmark`` run measured, and where.

    Attributes:
        config: model config name.
        frame: description of the input (``source``, ``num_points``, ``sweeps``, ``seed``).
        settings: warm-up and iteration counts.
        machine: :func:`machine_info`.
        results: one per measured variant.
        skipped: ``{variant: reason}`` for variants that could not run here.
        scaling: latency against points per frame and grid size.
    """

    config: str
    frame: dict[str, Any]
    settings: dict[str, Any]
    machine: dict[str, Any]
    results: list[VariantResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    scaling: list[ScalingPoint] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config, "frame": self.frame, "settings": self.settings, "machine": self.machine,
            "results": [r.to_dict() for r in self.results], "skipped": self.skipped,
            "scaling": [s.to_dict() for s in self.scaling],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BenchmarkReport":
        return cls(config=data["config"], frame=data["frame"], settings=data["settings"], machine=data["machine"],
                   results=[VariantResult.from_dict(r) for r in data["results"]], skipped=dict(data["skipped"]),
                   scaling=[ScalingPoint.from_dict(s) for s in data["scaling"]])


def _stats(data: dict[str, Any]) -> LatencyStats:
    return LatencyStats(**{k: v for k, v in data.items() if k != "fps"})


def machine_info(device: torch.device | str) -> dict[str, Any]:
    """CPU, GPU, driver and library versions of this machine (what a results table must name)."""
    device = torch.device(device)
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": _version("onnxruntime"),
        "tensorrt": _version("tensorrt"),
        "device": str(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), driver=_nvidia_driver())
    return info


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else None
