"""What both pipelines share: the stage names, the typed results, and the steps around the networks.

points -> upload -> voxelize -> decorate -> encoder -> scatter -> backbone_neck_head -> decode
-> nms -> output. :class:`~centerpoint_deploy.detector.Detector` (trimmed tensors) and
:class:`~centerpoint_deploy.static_pipeline.StaticPipeline` (fixed shapes, CUDA graphs) run the
same stages; a :data:`StageHook` called with each stage's name as it ends lets the benchmark put a
time mark (or a graph boundary) between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, TypeVar

import torch
from torch import Tensor

from centerpoint_deploy import contract
from centerpoint_deploy.backends.base import Backend
from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.errors import BackendError
from centerpoint_deploy.postprocess.node_params import NodePostprocessParams
from centerpoint_deploy.postprocess.rot_reference import undo_rot_y_axis_reference
from centerpoint_deploy.preprocess.autoware_voxelize import NodeVoxelizer
from centerpoint_deploy.preprocess.voxelize import VoxelCounts
from centerpoint_deploy.structures import Detections, Voxels

#: The pipeline's stages, in order; the only place their names are written.
STAGES = UPLOAD, VOXELIZE, DECORATE, ENCODER, SCATTER, HEAD, DECODE, NMS, OUTPUT = (
    "upload", "voxelize", "decorate", "encoder", "scatter", "backbone_neck_head", "decode", "nms", "output")

#: Called with a stage's name when it has ended (nothing waits for the device).
StageHook = Callable[[str], None]

#: Head maps of every task (plain mmdet3d convention, ``{"heatmap": Tensor[B, C_t, h, w], ...}``)
#: -> one :class:`Detections` per batch item.
PostProcessor = Callable[[list[dict[str, Tensor]]], list[Detections]]


def no_hook(_: str) -> None:
    """The hook of a plain call: nothing between stages."""


@dataclass
class StageOutputs:
    """Every intermediate result of one batch, for verification, benchmarking and debugging.

    Attributes:
        voxels: the pillars (``points [V, P, D]``, ``num_points [V]``, ``coords [V, 4]``); padded to
            ``max_voxels`` per cloud by the fixed-shape pipeline.
        features: ``Tensor[V, P, F]`` encoder input (``input_features``).
        pillar_features: ``Tensor[V, 1, C]`` encoder output.
        spatial_features: ``Tensor[B, C, H, W]`` head input.
        head_outputs: the head's flat ``{output name: Tensor[B, ch, h, w]}`` as the backend
            returned it (still in the y-axis-reference convention when the export used it).
        detections: one :class:`Detections` per cloud.
        voxel_counts: the real pillar counts of a padded voxelization (fixed-shape pipeline only).
    """

    voxels: Voxels
    features: Tensor
    pillar_features: Tensor
    spatial_features: Tensor
    head_outputs: dict[str, Tensor]
    detections: list[Detections]
    voxel_counts: VoxelCounts | None = None

    @property
    def num_voxels(self) -> int:
        """Pillars of the batch, padding not counted (reading padded counts synchronises)."""
        if self.voxel_counts is not None:
            return int(self.voxel_counts.num_voxels.sum())
        return self.voxels.num_voxels


_Owner = TypeVar("_Owner", bound="BackendOwner")


class BackendOwner:
    """Lifecycle of a pipeline that owns an encoder and a head backend: ``with pipeline: ...`` loads
    both and closes both on the way out."""

    encoder: Backend
    head: Backend

    def load(self: _Owner) -> _Owner:
        self.encoder.load()
        self.head.load()
        return self

    def close(self) -> None:
        self.encoder.close()
        self.head.close()

    def __enter__(self: _Owner) -> _Owner:
        return self.load()

    def __exit__(self, *exc: object) -> None:
        self.close()


class Pipeline(Protocol):
    """What every detector offers: :class:`~centerpoint_deploy.detector.Detector` and
    :class:`~centerpoint_deploy.static_pipeline.StaticPipeline` alike."""

    config: ModelConfig
    encoder: Backend
    head: Backend
    rot_y_axis_reference: bool
    device: torch.device
    #: the node's post-processing parameters of the bundle it runs (``None``: the node's defaults)
    node_params: NodePostprocessParams | None

    def load(self) -> "Pipeline": ...

    def close(self) -> None: ...

    def __enter__(self) -> "Pipeline": ...

    def __exit__(self, *exc: object) -> None: ...

    def __call__(self, points: Tensor | list[Tensor]) -> Detections | list[Detections]: ...

    def run_stages(self, points: Tensor | list[Tensor], hook: StageHook = ...) -> StageOutputs: ...

    def detect_with_head_outputs(self, points: Tensor | list[Tensor]) -> tuple[dict[str, Tensor], list[Detections]]: ...

    def detect_from_head_outputs(self, head_outputs: dict[str, Tensor]) -> list[Detections]: ...

    def with_config(self, config: ModelConfig) -> "Pipeline": ...


def upload(cloud: Tensor, device: torch.device) -> Tensor:
    """``cloud`` on ``device``; a host -> GPU copy goes through pinned memory without blocking the host."""
    if cloud.device == device:
        return cloud
    if device.type == "cuda" and cloud.device.type == "cpu":
        return (cloud if cloud.is_pinned() else cloud.pin_memory()).to(device, non_blocking=True)
    return cloud.to(device)


def node_voxelizer(config: ModelConfig, seed: int) -> NodeVoxelizer | None:
    """The Autoware node's voxelization (per-frame shuffle offsets drawn with ``seed``) when
    ``config.voxelization.mode == "autoware"``, else None (mmdet3d's)."""
    return NodeVoxelizer(config.voxelization, seed=seed) if config.voxelization.mode == "autoware" else None


def as_clouds(points: Tensor | list[Tensor]) -> list[Tensor]:
    """``Tensor[N, D]`` or a list of them -> a list."""
    return [points] if isinstance(points, Tensor) else list(points)


def task_maps(head_outputs: dict[str, Tensor], config: ModelConfig, rot_y_axis_reference: bool,
              device: torch.device) -> list[dict[str, Tensor]]:
    """The head's flat outputs as one dict of maps per task on ``device``, in the plain mmdet3d convention.

    Raises:
        BackendError: an output of :func:`contract.head_output_names` is missing.
    """
    num_tasks = len(config.head.tasks)
    missing = [name for name in contract.head_output_names(num_tasks) if name not in head_outputs]
    if missing:
        raise BackendError(f"head outputs lack {missing} for {num_tasks} task(s); got {sorted(head_outputs)}")
    on_device = {name: tensor.to(device) for name, tensor in head_outputs.items()}
    maps = contract.split_tasks(on_device, num_tasks)
    return [undo_rot_y_axis_reference(m) for m in maps] if rot_y_axis_reference else maps


#: Non-finite counts travel in float32 with the boxes (exact below 2**24).
_COUNT_LIMIT = (1 << 24) - 1


def count_nonfinite_outputs(head_outputs: dict[str, Tensor], names: tuple[str, ...]) -> Tensor:
    """``Tensor[len(names)]`` int64 on the outputs' device: NaN/inf elements per head output (no host sync;
    capped at 2**24 - 1 so that the count survives the float32 result copy)."""
    return torch.stack([(~torch.isfinite(head_outputs[name])).sum() for name in names]).clamp(max=_COUNT_LIMIT)


def raise_nonfinite_outputs(counts: list[int], names: tuple[str, ...], head: str) -> None:
    """Raise :class:`BackendError` naming the first head output with NaN or inf values."""
    for name, count in zip(names, counts):
        if count:
            more = "or more " if count >= _COUNT_LIMIT else ""
            raise BackendError(f"head backend {head}: output '{name}' holds {count} {more}NaN or inf values; "
                               "the network or its inputs are broken (boxes from it would be wrong)")
