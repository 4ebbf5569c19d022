"""What to run, as one value, and the one way to build a detector from it.

A variant is written ``<backend>:<precision>[+<flag>...]``, e.g.
``pytorch:fp16+channels_last+fuse_batchnorm+pipeline_graph``:

- backend: ``pytorch`` (a checkpoint, or seeded random weights), ``onnxruntime`` or
  ``tensorrt`` (a deploy directory written by ``centerpoint-deploy export`` / ``build-engine``);
- precision: ``fp32`` (TF32 off), ``tf32``, ``fp16``, ``bf16`` (PyTorch); ``fp32``, ``tf32``,
  ``fp16``, ``int8`` (ONNX Runtime; fp16 converts a copy of fp32 graphs, int8 needs an INT8
  export); for TensorRT the precision the
  engines were built with, or ``engine`` (whatever they were built with). A bare backend
  name takes :data:`DEFAULT_PRECISIONS`;
- flags: ``static`` (the GPU-resident fixed-shape pipeline, any backend), ``cudnn_benchmark``
  for ONNX Runtime (``cudnn_conv_algo_search="EXHAUSTIVE"``), and for PyTorch
  ``pipeline_graph`` (that pipeline captured whole in one CUDA graph; implies ``static``) and
  the :class:`~centerpoint_deploy.backends.pytorch.TorchOptions` switches (:data:`TORCH_FLAGS`;
  ``compile`` with ``static`` also compiles the pipeline's decoration and NMS).

The old short names (``pytorch-fp16``, ``pytorch-bf16``, ``pytorch-tf32``) are still read,
with a :class:`FutureWarning` naming the spelling that replaces them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from centerpoint_deploy.backends.base import Backend
from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.detector import Detector
from centerpoint_deploy.device import resolve_device
from centerpoint_deploy.errors import BackendError, BackendUnavailableError, ConfigError
from centerpoint_deploy.postprocess.modes import build_postprocess
from centerpoint_deploy.postprocess.node_params import NodePostprocessParams
from centerpoint_deploy.stages import PostProcessor
from centerpoint_deploy.static_pipeline import StaticPipeline, StaticSettings

if TYPE_CHECKING:
    from centerpoint_deploy.export.manifest import Manifest

BACKENDS = ("pytorch", "onnxruntime", "tensorrt")
#: Switches of :class:`~centerpoint_deploy.backends.pytorch.TorchOptions`, in canonical order.
TORCH_FLAGS = ("channels_last", "fuse_batchnorm", "fuse_relu", "fuse_heads", "fuse_neck", "cudnn_benchmark",
               "cuda_graph", "compile", "max_autotune")
#: Pipeline flags, written last.
PIPELINE_FLAGS = ("static", "pipeline_graph")
PRECISIONS = {"pytorch": ("fp32", "tf32", "fp16", "bf16"), "onnxruntime": ("fp32", "tf32", "fp16", "int8"),
              "tensorrt": ("engine", "fp32", "tf32", "fp16", "bf16", "int8", "best")}
DEFAULT_PRECISIONS = {"pytorch": "fp32", "onnxruntime": "fp32", "tensorrt": "engine"}
_ALLOWED_FLAGS = {"pytorch": (*TORCH_FLAGS, *PIPELINE_FLAGS),
                  "onnxruntime": ("channels_last", "cudnn_benchmark", "static", "pipeline_graph"),
                  "tensorrt": ("static",)}
#: Old short names (``backends.factory``) and the variants they meant.
LEGACY_NAMES = {"pytorch-tf32": "pytorch:tf32", "pytorch-fp16": "pytorch:fp16+channels_last+fuse_batchnorm",
                "pytorch-bf16": "pytorch:bf16+channels_last+fuse_batchnorm"}


@dataclass(frozen=True)
class VariantSpec:
    """One backend, precision and set of fast-path flags on one device.

    Attributes:
        backend: one of :data:`BACKENDS`.
        precision: one of ``PRECISIONS[backend]``.
        flags: distinct flags from ``_ALLOWED_FLAGS[backend]`` in canonical order (``TORCH_FLAGS``,
            then ``static`` / ``pipeline_graph``; ``pipeline_graph`` stands for both).
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (checked when built).

    Make one with :meth:`parse`; copy one with ``dataclasses.replace`` (checked again).
    """

    backend: str
    precision: str = "fp32"
    flags: tuple[str, ...] = ()
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise BackendError(f"backend '{self.backend}' is not one of {', '.join(BACKENDS)}")
        if self.precision not in PRECISIONS[self.backend]:
            raise BackendError(f"precision '{self.precision}' is not one of {', '.join(PRECISIONS[self.backend])} "
                               f"for {self.backend}")
        allowed = _ALLOWED_FLAGS[self.backend]
        unknown = [flag for flag in self.flags if flag not in allowed]
        if unknown or len(set(self.flags)) != len(self.flags):
            raise BackendError(f"{self.backend} flags {list(self.flags)} must be distinct, from {', '.join(allowed)}")
        flags = set(self.flags) - ({"static"} if "pipeline_graph" in self.flags else set())
        object.__setattr__(self, "flags", tuple(f for f in (*TORCH_FLAGS, *PIPELINE_FLAGS) if f in flags))
        object.__setattr__(self, "device", str(self.device))

    @classmethod
    def parse(cls, text: str, *, device: str | torch.device = "cpu") -> "VariantSpec":
        """``<backend>[:<precision>[+<flag>...]]`` (module doc) or an old short name.

        Raises:
            BackendError: an unknown backend, precision or flag, named with the text.
        """
        if text in LEGACY_NAMES:
            warnings.warn(f"backend name '{text}' is deprecated; write '{LEGACY_NAMES[text]}'", FutureWarning,
                          stacklevel=2)
            text = LEGACY_NAMES[text]
        backend, _, rest = text.partition(":")
        if backend not in BACKENDS:
            old = ", ".join(LEGACY_NAMES)
            raise BackendError(f"unknown backend '{backend}'; supported: {', '.join(BACKENDS)} "
                               f"(as '<backend>:<precision>[+flag...]', or the old names {old})")
        precision, *flags = rest.split("+") if rest else (DEFAULT_PRECISIONS[backend],)
        try:
            return cls(backend, precision, tuple(flags), str(device))
        except BackendError as exc:
            raise BackendError(f"variant '{text}': {exc}") from None

    @property
    def name(self) -> str:
        """The canonical text, e.g. ``pytorch:fp16+channels_last+pipeline_graph`` (device not included)."""
        return f"{self.backend}:" + "+".join([self.precision, *self.flags])

    @property
    def static(self) -> bool:
        """The fixed-shape pipeline (``static`` or ``pipeline_graph``)."""
        return "static" in self.flags or self.pipeline_graph

    @property
    def pipeline_graph(self) -> bool:
        return "pipeline_graph" in self.flags

    @property
    def runs_checkpoint(self) -> bool:
        """PyTorch runs a checkpoint; the other backends run a deploy directory."""
        return self.backend == "pytorch"

    @property
    def torch_flags(self) -> tuple[str, ...]:
        """The flags that are :class:`~centerpoint_deploy.backends.pytorch.TorchOptions` switches."""
        return tuple(flag for flag in self.flags if flag in TORCH_FLAGS)


def build_detector(spec: VariantSpec, config: ModelConfig, *, checkpoint: Path | str | None = None,
                   model: nn.Module | None = None, deploy_dir: Path | str | None = None,
                   postprocess: PostProcessor | None = None,
                   max_points: int = 400_000, nms_rounds: int = 16, work_dir: Path | None = None,
                   seed: int = 0, reproducible: bool = True) -> Detector | StaticPipeline:
    """The detector ``spec`` names (not loaded): a :class:`Detector`, or for ``static`` / ``pipeline_graph``
    the :class:`StaticPipeline` (same interface).

    Args:
        spec: the variant (its device included).
        config: the model.
        checkpoint: weights of a ``pytorch`` variant (``None``: random weights seeded with ``seed``).
        model: a ``CenterPoint`` module a ``pytorch`` variant runs instead (e.g. fake-quantized);
            not with ``checkpoint``.
        deploy_dir: exported graphs / engines of ``onnxruntime`` and ``tensorrt`` variants.
        postprocess: task maps -> boxes (default: ``config.postprocess``'s, the autoware one with
            the bundle's parameters when ``deploy_dir`` is a v4.1 bundle; the fixed-shape pipeline
            runs mmdet3d's own).
        max_points: the largest cloud a ``pipeline_graph`` variant captures.
        nms_rounds: NMS round budget of the fixed-shape pipeline.
        work_dir: where fp16 copies of the ONNX files go (default ``deploy_dir/fp16``).
        seed: seed of random weights.
        reproducible: ONNX Runtime with deterministic kernels (verification, evaluation);
            ``False`` lets it pick them for speed (cuDNN's heuristic search), as the benchmark
            measures. ``cudnn_benchmark`` implies ``False``.

    The detector's ``node_params`` are the bundle's (``None``: the node's defaults), which
    reports use for their autoware view.

    Raises:
        BackendError: arguments that do not fit the variant.
        BackendUnavailableError: the runtime, the device or the artifacts are missing here.
        ConfigError: a fixed-shape variant asked for another post-processing than mmdet3d's.
    """
    device = resolve_device(spec.device)
    if spec.static and (postprocess is not None or config.postprocess != "mmdet3d"):
        asked = "a postprocess callable" if postprocess is not None else f"postprocess '{config.postprocess}'"
        raise ConfigError(f"variant '{spec.name}': the fixed-shape pipeline runs mmdet3d's decode and NMS; "
                          f"{asked} needs a variant without static / pipeline_graph")
    if spec.pipeline_graph and device.type != "cuda":
        raise BackendUnavailableError(f"variant '{spec.name}': pipeline_graph needs a CUDA device, not '{device}'")
    backends = create_backends(spec, config, device, checkpoint=checkpoint, model=model, deploy_dir=deploy_dir,
                               work_dir=work_dir, seed=seed, reproducible=reproducible)
    encoder, head, rot, params = backends.encoder, backends.head, backends.rot_y_axis_reference, backends.node_params
    if not spec.static:
        if postprocess is None and config.postprocess != "mmdet3d":
            postprocess = build_postprocess(config, params=params)
        return Detector(config, encoder, head, rot_y_axis_reference=rot, device=device, postprocess=postprocess,
                        node_params=params)
    settings = StaticSettings(nms_rounds=nms_rounds, graph=spec.pipeline_graph, max_points=max_points,
                              compile="compile" in spec.flags)
    return StaticPipeline(config, encoder, head, rot_y_axis_reference=rot, device=device, settings=settings,
                          node_params=params)


@dataclass(frozen=True)
class BackendSet:
    """What a variant runs, as :func:`create_backends` finds it.

    Attributes:
        encoder, head: the two backends (not loaded).
        rot_y_axis_reference: the head's outputs need
            :func:`~centerpoint_deploy.postprocess.rot_reference.undo_rot_y_axis_reference`.
        node_params: the node's post-processing parameters of a v4.1 bundle (its score and
            yaw-norm thresholds, its class remapper); ``None`` for a checkpoint or a legacy bundle.
    """

    encoder: Backend
    head: Backend
    rot_y_axis_reference: bool
    node_params: NodePostprocessParams | None = None


def create_backends(spec: VariantSpec, config: ModelConfig, device: torch.device, *,
                    checkpoint: Path | str | None = None, model: nn.Module | None = None,
                    deploy_dir: Path | str | None = None,
                    work_dir: Path | None = None, seed: int = 0, reproducible: bool = True) -> BackendSet:
    """The encoder and head backends of ``spec`` (not loaded); :func:`build_detector` is the one caller.

    Runtimes are imported inside, so a missing ``onnxruntime`` / ``tensorrt`` only matters when
    that runtime is asked for.
    """
    if spec.backend == "pytorch":
        if deploy_dir is not None:
            raise BackendError("the pytorch backend runs a checkpoint; deploy_dir is for 'onnxruntime' / 'tensorrt'")
        return _pytorch_backends(spec, config, device, checkpoint, model, seed)
    if model is not None:
        raise BackendError(f"the {spec.backend} backend runs the exported files in deploy_dir, not a model")
    from centerpoint_deploy.export.bundle import bundle_node_params

    manifest = _deploy_manifest(spec.backend, config, checkpoint, deploy_dir)
    if spec.backend == "onnxruntime":
        encoder, head = _onnxruntime_backends(spec, manifest, device, work_dir or Path(deploy_dir) / "fp16",
                                              reproducible)
    else:
        encoder, head = _tensorrt_backends(spec, manifest, device, Path(deploy_dir))
    return BackendSet(encoder, head, manifest.rot_y_axis_reference, bundle_node_params(manifest, config))


def _pytorch_backends(spec: VariantSpec, config: ModelConfig, device: torch.device,
                      checkpoint: Path | str | None, model: nn.Module | None, seed: int) -> BackendSet:
    from centerpoint_deploy.backends.pytorch import TorchEncoderBackend, TorchHeadBackend, TorchOptions
    from centerpoint_deploy.model import build_model

    options = TorchOptions(precision=spec.precision, **{flag: True for flag in spec.torch_flags}).validate(device)
    if model is not None and checkpoint is not None:
        raise BackendError("give the pytorch backend a checkpoint or a model, not both")
    if model is None:
        with torch.random.fork_rng(devices=[]):  # random weights are reproducible and leave the caller's RNG alone
            torch.manual_seed(seed)
            model = build_model(config, checkpoint=checkpoint, device=device)
    return BackendSet(TorchEncoderBackend(model, config, device, options),
                      TorchHeadBackend(model, config, device, options), False)


def _deploy_manifest(kind: str, config: ModelConfig, checkpoint: Path | str | None,
                     deploy_dir: Path | str | None) -> "Manifest":
    """The manifest of ``deploy_dir``, checked to describe ``config`` (files there are what runs)."""
    from centerpoint_deploy.export.manifest import config_mismatches, load_manifest

    if checkpoint is not None:
        raise BackendError(f"the {kind} backend runs the exported files in deploy_dir, not a checkpoint")
    if deploy_dir is None:
        raise BackendError(f"the {kind} backend needs deploy_dir (--deploy-dir: a directory written by "
                           "'centerpoint-deploy export')")
    manifest = load_manifest(deploy_dir)
    mismatches = config_mismatches(manifest, config)
    if mismatches:
        raise BackendError(f"{deploy_dir} was exported from a different config: " + "; ".join(mismatches))
    return manifest


def _onnxruntime_backends(spec: VariantSpec, manifest: "Manifest", device: torch.device,
                          work_dir: Path, reproducible: bool) -> tuple[Backend, Backend]:
    from centerpoint_deploy.backends.onnxruntime import OnnxRuntimeBackend, require_cuda_provider
    from centerpoint_deploy.export.precision.fp16 import convert_onnx_to_fp16

    if device.type == "cuda":
        require_cuda_provider()  # before any fp16 conversion
    paths = {part: manifest.onnx_path(part) for part in ("encoder", "head")}
    if spec.precision == "int8" and manifest.precision != "int8":
        raise BackendError(f"variant '{spec.name}' needs an INT8 export; the deploy directory holds "
                           f"{manifest.precision} graphs (centerpoint-deploy export --precision int8 --dataset DATA)")
    if spec.precision == "fp16" and manifest.precision != "fp16":
        # an fp32 export: convert a copy (an `export --precision fp16` graph is used as it is)
        paths = {part: convert_onnx_to_fp16(path, work_dir / path.name.replace(".onnx", ".fp16.onnx"))
                 for part, path in paths.items()}
    deterministic = reproducible and "cudnn_benchmark" not in spec.flags
    encoder, head = (OnnxRuntimeBackend(paths[part], device, part=part, deterministic=deterministic,
                                        tf32=spec.precision == "tf32", cudnn_benchmark="cudnn_benchmark" in spec.flags,
                                        prefer_nhwc=part == "head" and "channels_last" in spec.flags)
                     for part in ("encoder", "head"))
    return encoder, head


def _tensorrt_backends(spec: VariantSpec, manifest: "Manifest", device: torch.device,
                       deploy_dir: Path) -> tuple[Backend, Backend]:
    from centerpoint_deploy.backends.tensorrt import TensorRTBackend

    if device.type != "cuda":
        raise BackendError(f"the tensorrt backend runs on CUDA; got device '{device}'")
    built = {record.precision for record in manifest.engines.values()}
    if spec.precision != "engine" and manifest.engines and built != {spec.precision}:
        raise BackendError(f"variant '{spec.name}': the engines in {deploy_dir} were built with precision "
                           f"{sorted(built)}; name that precision (or 'tensorrt:engine') or rebuild")
    return (TensorRTBackend(manifest.engine_path("encoder"), device, part="encoder"),
            TensorRTBackend(manifest.engine_path("head"), device, part="head"))
