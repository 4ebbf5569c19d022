"""Calibration inputs of both graphs from frames of the user's dataset.

The encoder graph is fed what the detector's own pre-processing makes of each frame
(voxelization and decoration, :func:`~centerpoint_deploy.preprocess.prepare_encoder_input`);
the head graph is fed the scattered BEV map of the fp32 PyTorch encoder's pillar features on
the same frame (:func:`~centerpoint_deploy.preprocess.scatter_to_bev`), i.e. what the head
sees in deployment. Each frame is identified by the sha256 of its point array, so the plan
written into the bundle says exactly which data the scales came from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from centerpoint_deploy import contract
from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.data.frame import Frame
from centerpoint_deploy.errors import ExportError
from centerpoint_deploy.preprocess import prepare_encoder_input, scatter_to_bev

#: Fewest frames a calibration may use: fewer give scales that follow single frames.
MIN_CALIBRATION_FRAMES = 4
#: ``--calib-frames`` default (AWML's released INT8 model used 1024).
DEFAULT_CALIBRATION_FRAMES = 256


@dataclass(frozen=True)
class CalibrationSet:
    """Inputs of both graphs on the calibration frames, in frame order.

    Attributes:
        encoder_inputs: per frame ``input_features`` ``Tensor[V_i, P, F]`` float32, CPU.
        head_inputs: per frame ``spatial_features`` ``Tensor[1, C, H, W]`` float32, CPU.
        frame_tokens: sample token of each frame.
        frame_sha256: sha256 (hex) of each frame's point array (float32 bytes, as fed).
    """

    encoder_inputs: tuple[Tensor, ...]
    head_inputs: tuple[Tensor, ...]
    frame_tokens: tuple[str, ...]
    frame_sha256: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.frame_tokens)

    def feeds(self, part: str) -> list[dict[str, np.ndarray]]:
        """ONNX Runtime feeds ``{input name: array}`` of ``part`` (``"encoder"`` or ``"head"``), one per frame."""
        if part == "encoder":
            return [{contract.ENCODER_INPUT: t.numpy()} for t in self.encoder_inputs]
        if part == "head":
            return [{contract.HEAD_INPUT: t.numpy()} for t in self.head_inputs]
        raise ExportError(f"graph part '{part}' is not one of 'encoder', 'head'")

    def split(self, count: int) -> tuple["CalibrationSet", "CalibrationSet"]:
        """The first ``count`` frames and the rest."""
        def take(s: slice) -> CalibrationSet:
            return CalibrationSet(self.encoder_inputs[s], self.head_inputs[s], self.frame_tokens[s],
                                  self.frame_sha256[s])
        return take(slice(None, count)), take(slice(count, None))


def check_frame_count(requested: int, available: int) -> None:
    """Raise :class:`ExportError` unless ``MIN_CALIBRATION_FRAMES <= requested <= available``."""
    if requested < MIN_CALIBRATION_FRAMES:
        raise ExportError(f"--calib-frames {requested} is too few: calibration needs at least "
                          f"{MIN_CALIBRATION_FRAMES} frames")
    if requested > available:
        raise ExportError(f"--calib-frames {requested} asks for more frames than the dataset holds ({available}); "
                          f"pass --calib-frames {available} or fewer, or a larger dataset")


def pick_frames(total: int, count: int) -> list[int]:
    """``count`` frame indices spread evenly over ``range(total)`` (scenes vary along a dataset)."""
    return sorted({int(i) for i in np.linspace(0, total - 1, count).round()})


def check_classes(frames: Sequence[Frame], class_names: Sequence[str]) -> None:
    """Raise :class:`ExportError` when annotated frames hold no box of the model's classes.

    The dataset readers drop annotations of categories that map to none of the model's
    classes, so annotated frames without any box left mean the dataset's classes are not the
    model's (a wrong dataset or category mapping).
    """
    annotated = [f for f in frames if f.gt is not None]
    if annotated and not any(len(f.gt.labels) for f in annotated):
        raise ExportError(f"none of the {len(annotated)} annotated calibration frames holds a box of the model's "
                          f"classes {list(class_names)}: the dataset's classes do not match the model "
                          "(wrong dataset or --category-mapping)")


def collect_calibration(model: nn.Module, config: ModelConfig, frames: Sequence[Frame]) -> CalibrationSet:
    """Run the pre-processing and the fp32 PyTorch encoder on ``frames``.

    Args:
        model: the ``CenterPoint`` being exported (eval mode is set by the caller).
        frames: the calibration frames (points ``ndarray[N, >= len(use_dim)]``).
    """
    device = next(model.parameters()).device
    use_dim = list(config.points.use_dim)
    encoder_inputs, head_inputs, tokens, digests = [], [], [], []
    with torch.no_grad():
        for frame in frames:
            points = np.ascontiguousarray(frame.points[:, use_dim], dtype=np.float32)
            voxels, features = prepare_encoder_input([torch.from_numpy(points).to(device)], config)
            pillars = model.encode(features)
            bev = scatter_to_bev(pillars, voxels.coords, 1, config.bev_shape)
            encoder_inputs.append(features.cpu())
            head_inputs.append(bev.cpu())
            tokens.append(frame.token)
            digests.append(hashlib.sha256(points.tobytes()).hexdigest())
    return CalibrationSet(tuple(encoder_inputs), tuple(head_inputs), tuple(tokens), tuple(digests))

