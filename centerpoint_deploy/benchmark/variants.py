"""Pipeline variants to benchmark: a backend, a precision and fast-path switches, named by a short string.

Syntax: ``<backend>:<precision>[+<flag>...]``, e.g. ``pytorch:fp16+channels_last+cuda_graph+static``.

- backend: ``pytorch`` (a checkpoint, or random weights), ``onnxruntime`` or ``tensorrt``
  (a deploy directory written by ``centerpoint-deploy export`` / ``build-engine``);
- precision: ``fp32`` (TF32 off), ``tf32``, ``fp16``, ``bf16`` (PyTorch); ``fp32``, ``tf32``,
  ``fp16`` (ONNX Runtime; fp16 converts a copy of the graphs); TensorRT runs its engines'
  precision (write the one they were built with);
- flags: ``static`` (the GPU-resident fixed-shape pipeline, any backend), ``cudnn_benchmark``
  for ONNX Runtime (``cudnn_conv_algo_search="EXHAUSTIVE"``), and for PyTorch
  ``pipeline_graph`` (that pipeline captured whole in one CUDA graph, ``Detector(graph=True)``;
  implies ``static``) and the :class:`~centerpoint_deploy.backends.pytorch.TorchOptions`
  switches ``channels_last``, ``fuse_batchnorm``, ``fuse_relu``, ``cudnn_benchmark``,
  ``cuda_graph``, ``compile``, ``max_autotune`` (``compile`` with ``static`` also compiles the
  detector's decoration and NMS: ``Detector(compile=True)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from centerpoint_deploy.backends.base import Backend
from centerpoint_deploy.backends.pytorch import TorchEncoderBackend, TorchHeadBackend, TorchOptions
from centerpoint_deploy.benchmark.timing import BenchmarkError
from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.detector import Detector
from centerpoint_deploy.errors import BackendUnavailableError
from centerpoint_deploy.export.precision.fp16 import convert_onnx_to_fp16

BACKENDS = ("pytorch", "onnxruntime", "tensorrt")
TORCH_FLAGS = ("channels_last", "fuse_batchnorm", "fuse_relu", "cudnn_benchmark", "cuda_graph", "compile",
               "max_autotune")
PRECISIONS = {"pytorch": ("fp32", "tf32", "fp16", "bf16"), "onnxruntime": ("fp32", "tf32", "fp16", "int8"),
              "tensorrt": ("fp32", "tf32", "fp16", "bf16", "int8", "best")}

#: The variants ``benchmark`` runs when none are named, per device type.
DEFAULT_VARIANTS = {
    "cpu": ("pytorch:fp32", "pytorch:fp32+static", "pytorch:bf16+fuse_batchnorm", "onnxruntime:fp32"),
    "cuda": (
        "pytorch:fp32", "pytorch:tf32", "pytorch:fp16+channels_last+fuse_batchnorm",
        "pytorch:fp16+channels_last+fuse_batchnorm+cuda_graph+static",
        "pytorch:bf16+channels_last+fuse_batchnorm+cuda_graph+static",
        "pytorch:fp16+channels_last+fuse_batchnorm+fuse_relu+pipeline_graph",
        "pytorch:fp16+channels_last+fuse_batchnorm+compile+max_autotune+pipeline_graph",
        "onnxruntime:fp32", "onnxruntime:fp16", "onnxruntime:fp16+static", "tensorrt:fp16",
    ),
}


@dataclass(frozen=True)
class VariantSpec:
    """One parsed variant string (see module doc)."""

    backend: str
    precision: str = "fp32"
    static: bool = False
    flags: tuple[str, ...] = ()
    pipeline_graph: bool = False

    @classmethod
    def parse(cls, text: str) -> "VariantSpec":
        backend, _, rest = text.partition(":")
        if backend not in BACKENDS:
            raise BenchmarkError(f"variant '{text}': backend '{backend}' is not one of {', '.join(BACKENDS)}")
        precision, *flags = (rest or "fp32").split("+")
        if precision not in PRECISIONS[backend]:
            raise BenchmarkError(f"variant '{text}': precision '{precision}' is not one of "
                                 f"{', '.join(PRECISIONS[backend])} for {backend}")
        allowed = {"pytorch": ("static", "pipeline_graph", *TORCH_FLAGS), "onnxruntime": ("static", "cudnn_benchmark"),
                   "tensorrt": ("static",)}[backend]
        unknown = [f for f in flags if f not in allowed]
        if unknown or len(set(flags)) != len(flags):
            raise BenchmarkError(f"variant '{text}': flags {flags} must be distinct, from {', '.join(allowed)}")
        torch_flags = tuple(f for f in TORCH_FLAGS if f in flags)  # canonical order
        graph = "pipeline_graph" in flags
        return cls(backend, precision, graph or "static" in flags, torch_flags, graph)

    @property
    def name(self) -> str:
        pipeline = ["pipeline_graph"] if self.pipeline_graph else ["static"] if self.static else []
        return f"{self.backend}:" + "+".join([self.precision, *self.flags, *pipeline])

    def torch_options(self) -> TorchOptions:
        return TorchOptions(precision=self.precision, **{flag: True for flag in self.flags})


def build_detector(spec: VariantSpec, config: ModelConfig, *, device: torch.device, checkpoint: Path | None = None,
                   deploy_dir: Path | None = None, work_dir: Path | None = None,
                   max_points: int = 400_000) -> Detector:
    """A detector for ``spec`` (not loaded).

    Args:
        checkpoint: weights for PyTorch (None: random weights, seeded).
        deploy_dir: exported graphs / engines for ONNX Runtime and TensorRT.
        work_dir: where fp16 copies of the ONNX files go (default: ``deploy_dir/fp16``).
        max_points: the largest cloud a ``pipeline_graph`` variant captures (``Detector``).

    Raises:
        BackendUnavailableError: the runtime, device, or artifacts for it are missing here
            (the benchmark lists the variant as skipped with this message).
    """
    if spec.backend == "pytorch":
        encoder, head = _pytorch(spec, config, device, checkpoint)
        rot = False
    elif deploy_dir is None:
        raise BackendUnavailableError(f"{spec.backend} needs --deploy-dir (from 'centerpoint-deploy export')")
    elif spec.backend == "onnxruntime":
        encoder, head, rot = _onnxruntime(spec, config, device, deploy_dir, work_dir or deploy_dir / "fp16")
    else:
        encoder, head, rot = _tensorrt(spec, config, device, deploy_dir)
    if spec.pipeline_graph and device.type != "cuda":
        raise BackendUnavailableError(f"variant '{spec.name}': pipeline_graph needs a CUDA device, not '{device}'")
    return Detector(config, encoder, head, rot_y_axis_reference=rot, device=device, static_shapes=spec.static,
                    graph=spec.pipeline_graph, max_points=max_points, compile=spec.static and "compile" in spec.flags)


def _pytorch(spec: VariantSpec, config: ModelConfig, device: torch.device,
             checkpoint: Path | None) -> tuple[Backend, Backend]:
    from centerpoint_deploy.model import build_model

    options = spec.torch_options().validate(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(config, checkpoint=checkpoint, device=device)
    return TorchEncoderBackend(model, config, device, options), TorchHeadBackend(model, config, device, options)


def _onnxruntime(spec: VariantSpec, config: ModelConfig, device: torch.device, deploy_dir: Path,
                 work_dir: Path) -> tuple[Backend, Backend, bool]:
    from centerpoint_deploy.backends.factory import create_backends
    from centerpoint_deploy.backends.onnxruntime import OnnxRuntimeBackend, import_onnxruntime
    from centerpoint_deploy.export.manifest import load_manifest

    ort = import_onnxruntime()
    if device.type == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
        raise BackendUnavailableError(f"onnxruntime {ort.__version__} has no CUDAExecutionProvider here "
                                      f"(providers: {ort.get_available_providers()}); install onnxruntime-gpu")
    encoder, head, rot = create_backends("onnxruntime", config, deploy_dir=deploy_dir, device=device)
    paths = {"encoder": encoder.onnx_path, "head": head.onnx_path}  # checked against the manifest
    exported = load_manifest(deploy_dir).precision
    if spec.precision == "int8" and exported != "int8":
        raise BenchmarkError(f"variant '{spec.name}' needs an INT8 export; {deploy_dir} holds {exported} graphs "
                             "(centerpoint-deploy export --precision int8 --dataset DATA)")
    if spec.precision == "fp16" and exported != "fp16":
        # an fp32 export: convert a copy (an `export --precision fp16` graph is used as it is)
        paths = {part: convert_onnx_to_fp16(path, work_dir / path.name.replace(".onnx", ".fp16.onnx"))
                 for part, path in paths.items()}
    backends = [OnnxRuntimeBackend(paths[part], device, part=part, deterministic=False, tf32=spec.precision == "tf32",
                                   cudnn_benchmark="cudnn_benchmark" in spec.flags) for part in ("encoder", "head")]
    return backends[0], backends[1], rot


def _tensorrt(spec: VariantSpec, config: ModelConfig, device: torch.device,
              deploy_dir: Path) -> tuple[Backend, Backend, bool]:
    from centerpoint_deploy.backends.factory import create_backends
    from centerpoint_deploy.export.manifest import load_manifest

    engines = load_manifest(deploy_dir).engines
    built = {record.precision for record in engines.values()}
    if engines and built != {spec.precision}:
        raise BenchmarkError(f"variant '{spec.name}': the engines in {deploy_dir} were built with precision "
                             f"{sorted(built)}; name that precision or rebuild")
    encoder, head, rot = create_backends("tensorrt", config, deploy_dir=deploy_dir, device=device)
    return encoder, head, rot

