"""Calibration inputs of both graphs from frames of the user's dataset.

The encoder graph is fed what the detector's own pre-processing makes of each frame
(voxelization and decoration, :func:`~centerpoint_deploy.preprocess.prepare_encoder_input`);
the head graph is fed the scattered BEV map of the fp32 PyTorch encoder's pillar features on
the same frame (:func:`~centerpoint_deploy.preprocess.scatter_to_bev`), i.e. what the head
sees in deployment. Only the pillar features are kept; each BEV map is scattered when it is
read (a j6gen2_base_amp map is 133 MB, 256 of them 34 GB). The pillar coordinates and the model's score threshold are kept too: the
sensitivity scan judges an encoder candidate by the fp32 head's outputs on its scattered
features, and every candidate by the outputs where the fp32 model detects something. Each frame is identified by the sha256 of its point array, so the plan
written into the bundle says exactly which data the scales came from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

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
        pillar_features: per frame the fp32 PyTorch encoder's output ``Tensor[V_i, C]`` float32,
            CPU: scattered, the head's input (:meth:`head_input`).
        pillar_coords: per frame ``Tensor[V_i, 4]`` int ``(batch, z, y, x)`` of the encoder's pillars.
        frame_tokens: sample token of each frame.
        frame_sha256: sha256 (hex) of each frame's point array (float32 bytes, as fed).
        bev_shape: ``(H, W)`` of the head input.
        score_threshold: the model's ``decode.score_threshold``: cells whose fp32 score reaches
            it are where the box outputs count (:func:`~.sensitivity.detection_snr`).
    """

    encoder_inputs: tuple[Tensor, ...]
    pillar_features: tuple[Tensor, ...]
    pillar_coords: tuple[Tensor, ...]
    frame_tokens: tuple[str, ...]
    frame_sha256: tuple[str, ...]
    bev_shape: tuple[int, int]
    score_threshold: float

    def __len__(self) -> int:
        return len(self.frame_tokens)

    def head_input(self, index: int) -> Tensor:
        """Frame ``index``'s ``spatial_features`` ``Tensor[1, C, H, W]`` float32 (scattered now)."""
        return scatter_to_bev(self.pillar_features[index], self.pillar_coords[index], 1, self.bev_shape)

    def feeds(self, part: str) -> "Feeds":
        """ONNX Runtime feeds ``{input name: array}`` of ``part`` (``"encoder"`` or ``"head"``), one per
        frame, each made when it is read."""
        if part == "encoder":
            return Feeds(len(self), lambda i: {contract.ENCODER_INPUT: self.encoder_inputs[i].numpy()})
        if part == "head":
            return Feeds(len(self), lambda i: {contract.HEAD_INPUT: self.head_input(i).numpy()})
        raise ExportError(f"graph part '{part}' is not one of 'encoder', 'head'")

    def subset(self, indices: Sequence[int]) -> "CalibrationSet":
        """The frames at ``indices``, in that order."""
        def pick(values: tuple) -> tuple:
            return tuple(values[i] for i in indices)

        return CalibrationSet(pick(self.encoder_inputs), pick(self.pillar_features), pick(self.pillar_coords),
                              pick(self.frame_tokens), pick(self.frame_sha256), self.bev_shape, self.score_threshold)

    @property
    def digest(self) -> str:
        """sha256 (hex) of the frames' sha256s, one per line in frame order: the data the scales came from."""
        return hashlib.sha256("\n".join(self.frame_sha256).encode()).hexdigest()


class Feeds(Sequence[dict[str, np.ndarray]]):
    """``count`` graph feeds, feed ``i`` made by ``make(i)`` each time it is read (none kept)."""

    def __init__(self, count: int, make: Callable[[int], dict[str, np.ndarray]]) -> None:
        self._count, self._make = count, make

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index):  # type: ignore[override]  # Sequence's int | slice overloads
        if isinstance(index, slice):
            return [self._make(i) for i in range(*index.indices(self._count))]
        if not -self._count <= index < self._count:
            raise IndexError(index)
        return self._make(index % self._count)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return (self._make(i) for i in range(self._count))


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
    encoder_inputs, pillar_features, coords, tokens, digests = [], [], [], [], []
    with torch.no_grad():
        for frame in frames:
            points = np.ascontiguousarray(frame.points[:, use_dim], dtype=np.float32)
            voxels, features = prepare_encoder_input([torch.from_numpy(points).to(device)], config)
            pillars = model.encode(features)  # [V, 1, C] or [V, C]
            encoder_inputs.append(features.cpu())
            pillar_features.append(pillars.reshape(pillars.shape[0], -1).float().cpu())
            coords.append(voxels.coords.cpu())
            tokens.append(frame.token)
            digests.append(hashlib.sha256(points.tobytes()).hexdigest())
    return CalibrationSet(tuple(encoder_inputs), tuple(pillar_features), tuple(coords), tuple(tokens), tuple(digests),
                          tuple(config.bev_shape), config.decode.score_threshold)

