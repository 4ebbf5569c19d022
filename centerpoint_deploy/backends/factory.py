"""Build the (encoder, head) backend pair of one runtime by name.

One plain function per runtime; :func:`create_backends` dispatches on ``kind``. Runtimes are
imported inside their builder, so a missing ``onnxruntime`` / ``tensorrt`` only matters when
that runtime is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from centerpoint_deploy.backends.base import Backend
from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.errors import BackendError, BackendUnavailableError

if TYPE_CHECKING:
    from centerpoint_deploy.export.manifest import Manifest

#: ``(encoder, head, rot_y_axis_reference)``: the head's outputs need
#: :func:`~centerpoint_deploy.postprocess.rot_reference.undo_rot_y_axis_reference` when True.
BackendPair = tuple[Backend, Backend, bool]


def resolve_device(device: torch.device | str) -> torch.device:
    """``"cpu"`` / ``"cuda"`` / ``"cuda:N"`` as a ``torch.device`` that exists here.

    Raises:
        BackendError: not a CPU or CUDA device string.
        BackendUnavailableError: CUDA asked for but not available (or no such GPU index).
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise BackendError(f"device '{device}' is not a valid device; use 'cpu', 'cuda' or 'cuda:N'") from exc
    if resolved.type not in ("cpu", "cuda"):
        raise BackendError(f"device '{device}' is not supported; use 'cpu', 'cuda' or 'cuda:N'")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendUnavailableError(f"device '{device}' requested but CUDA is not available "
                                          f"(torch {torch.__version__}, built with CUDA {torch.version.cuda})")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise BackendUnavailableError(f"device '{device}' requested but only {torch.cuda.device_count()} GPU(s) exist")
    return resolved


#: PyTorch fast-path variants by kind name: ``pytorch-<precision>`` (fp16/bf16 with channels-last
#: and folded BatchNorm). Each builds the ``pytorch`` backends with these
#: :class:`~centerpoint_deploy.backends.pytorch.TorchOptions` keyword arguments.
PYTORCH_VARIANTS: dict[str, dict[str, object]] = {
    "pytorch-tf32": {"precision": "tf32"},
    "pytorch-fp16": {"precision": "fp16", "channels_last": True, "fuse_batchnorm": True},
    "pytorch-bf16": {"precision": "bf16", "channels_last": True, "fuse_batchnorm": True},
}


def _pytorch_backends(config: ModelConfig, checkpoint: Path | str | None, deploy_dir: Path | str | None,
                      device: torch.device, options: dict[str, object] | None = None) -> BackendPair:
    from centerpoint_deploy.backends.pytorch import TorchEncoderBackend, TorchHeadBackend, TorchOptions
    from centerpoint_deploy.model import build_model

    if deploy_dir is not None:
        raise BackendError("the pytorch backend runs a checkpoint; deploy_dir is for 'onnxruntime' / 'tensorrt'")
    chosen = TorchOptions(**(options or {})).validate(device)  # fail before loading weights
    model = build_model(config, checkpoint=checkpoint, device=device)
    return (TorchEncoderBackend(model, config, device, chosen), TorchHeadBackend(model, config, device, chosen),
            False)


def _deploy_manifest(kind: str, config: ModelConfig, checkpoint: Path | str | None,
                     deploy_dir: Path | str | None) -> "Manifest":
    """The manifest of ``deploy_dir``, checked to describe ``config`` (files there are what runs)."""
    from centerpoint_deploy.export.manifest import config_mismatches, load_manifest

    if checkpoint is not None:
        raise BackendError(f"the {kind} backend runs the exported files in deploy_dir, not a checkpoint")
    if deploy_dir is None:
        raise BackendError(f"the {kind} backend needs deploy_dir (a directory written by 'centerpoint-deploy export')")
    manifest = load_manifest(deploy_dir)
    mismatches = config_mismatches(manifest, config)
    if mismatches:
        raise BackendError(f"{deploy_dir} was exported from a different config: " + "; ".join(mismatches))
    return manifest


def _onnxruntime_backends(config: ModelConfig, checkpoint: Path | str | None, deploy_dir: Path | str | None,
                          device: torch.device) -> BackendPair:
    from centerpoint_deploy.backends.onnxruntime import OnnxRuntimeBackend

    manifest = _deploy_manifest("onnxruntime", config, checkpoint, deploy_dir)
    return (OnnxRuntimeBackend(manifest.onnx_path("encoder"), device, part="encoder"),
            OnnxRuntimeBackend(manifest.onnx_path("head"), device, part="head"),
            manifest.rot_y_axis_reference)


def _tensorrt_backends(config: ModelConfig, checkpoint: Path | str | None, deploy_dir: Path | str | None,
                       device: torch.device) -> BackendPair:
    from centerpoint_deploy.backends.tensorrt import TensorRTBackend

    if device.type != "cuda":
        raise BackendError(f"the tensorrt backend runs on CUDA; got device '{device}'")
    manifest = _deploy_manifest("tensorrt", config, checkpoint, deploy_dir)
    return (TensorRTBackend(manifest.engine_path("encoder"), device, part="encoder"),
            TensorRTBackend(manifest.engine_path("head"), device, part="head"),
            manifest.rot_y_axis_reference)


_BUILDERS: dict[str, Callable[[ModelConfig, Path | str | None, Path | str | None, torch.device], BackendPair]] = {
    "pytorch": _pytorch_backends,
    "onnxruntime": _onnxruntime_backends,
    "tensorrt": _tensorrt_backends,
}

#: Backend kinds :func:`create_backends` knows.
SUPPORTED_KINDS: tuple[str, ...] = tuple(_BUILDERS)


def create_backends(kind: str, config: ModelConfig, *, checkpoint: Path | str | None = None,
                    deploy_dir: Path | str | None = None, device: torch.device | str = "cpu") -> BackendPair:
    """Build the encoder and head backends of one runtime (not yet loaded).

    Args:
        kind: one of :data:`SUPPORTED_KINDS`, or a :data:`PYTORCH_VARIANTS` name (a checkpoint
            run with PyTorch fast paths, e.g. ``"pytorch-fp16"``).
        config: the model.
        checkpoint: weights for ``"pytorch"`` (``None``: randomly initialised, for smoke tests).
        deploy_dir: exported artifacts for ``"onnxruntime"`` / ``"tensorrt"``.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Returns:
        ``(encoder, head, rot_y_axis_reference)``.

    Raises:
        BackendError: unknown ``kind`` or arguments that do not fit it.
        BackendUnavailableError: the runtime or the device is not usable here.
    """
    if kind in PYTORCH_VARIANTS:
        return _pytorch_backends(config, checkpoint, deploy_dir, resolve_device(device), PYTORCH_VARIANTS[kind])
    builder = _BUILDERS.get(kind)
    if builder is None:
        raise BackendError(f"unknown backend '{kind}'; supported: {', '.join(SUPPORTED_KINDS + tuple(PYTORCH_VARIANTS))}")
    return builder(config, checkpoint, deploy_dir, resolve_device(device))
