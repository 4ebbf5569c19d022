"""Build a ready-to-run :class:`CenterPoint` from a config and, optionally, a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.errors import BackendUnavailableError, ConfigError
from centerpoint_deploy.model.centerpoint import CenterPoint
from centerpoint_deploy.model.checkpoint import load_checkpoint


def build_model(config: ModelConfig, checkpoint: str | Path | Mapping[str, Any] | None = None,
                device: str | torch.device = "cpu") -> CenterPoint:
    """The model of ``config`` in eval mode on ``device``, with the checkpoint's weights if given.

    Raises:
        ConfigError: ``config`` is not a ModelConfig or ``device`` is not a device name.
        BackendUnavailableError: a CUDA device is asked for but CUDA is not available.
        CheckpointError: see :func:`~centerpoint_deploy.model.checkpoint.load_checkpoint`.
    """
    if not isinstance(config, ModelConfig):
        raise ConfigError(f"build_model needs a ModelConfig (see config.load_config), got {type(config).__name__}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device {device!r} is not a torch device name such as 'cpu' or 'cuda:0'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(f"device {device!r} asked for, but CUDA is not available here")
    model = CenterPoint(config.validate())
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model.to(dev).eval()
