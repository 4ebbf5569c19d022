"""The GPU-resident pipeline: fixed-size tensors from points to boxes, optionally one CUDA graph.

Every tensor has a fixed size (``max_voxels`` pillars per cloud, padded box lists, a fixed NMS
round budget), so no stage reads anything on the host; the input checks (non-finite points,
clouds without pillars, ``max_voxels`` overflow), the non-finite head outputs and NMS
convergence travel with the boxes in one device -> host copy at the end and are judged there.
Same boxes as :class:`~centerpoint_deploy.detector.Detector` (an NMS budget too small for a frame
falls back to the exact iteration), the same typed interface.

With ``graph`` the whole pipeline is captured (:func:`~centerpoint_deploy.cuda_graphs.capture`)
once per batch size and point-buffer size (:mod:`~centerpoint_deploy.point_buffer`): a call is
one copy in, one replay, one copy out. With ``compile`` decoration and NMS are compiled.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Sequence

import torch
from torch import Tensor

from centerpoint_deploy import contract
from centerpoint_deploy.backends.base import Backend
from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.cuda_graphs import Captured, capture
from centerpoint_deploy.errors import BackendError, ConfigError
from centerpoint_deploy.point_buffer import PointBuffer, point_capacity
from centerpoint_deploy.postprocess import DecodedBoxes, decode_tasks, merge_tasks, postprocess, suppress, unpack_host
from centerpoint_deploy.preprocess import check_points, count_nonfinite, decorate, raise_nonfinite, scatter_to_bev
from centerpoint_deploy.preprocess.voxelize import VoxelCounts, check_voxel_counts, voxelize_padded
from centerpoint_deploy.stages import (DECODE, DECORATE, ENCODER, HEAD, NMS, OUTPUT, SCATTER, UPLOAD, VOXELIZE,
                                       StageHook, StageOutputs, as_clouds, count_nonfinite_outputs, no_hook,
                                       node_voxelizer, raise_nonfinite_outputs, task_maps, upload)
from centerpoint_deploy.structures import Detections, Voxels


@dataclass(frozen=True)
class StaticSettings:
    """How the fixed-shape pipeline runs.

    Attributes:
        nms_rounds: the NMS round budget (>= 1).
        graph: capture the pipeline as a CUDA graph (a CUDA device and capturable backends,
            i.e. PyTorch's). :meth:`StaticPipeline.run_stages` still runs it uncaptured.
        max_points: the most rows per cloud of a graph's point buffer; a larger cloud runs
            uncaptured (same results, slower) and warns.
        compile: ``torch.compile`` decoration and the fixed-round NMS (a few fused kernels each).
        voxel_seed: the shuffle seed of ``voxelization.mode == "autoware"`` (not with ``graph``:
            the node draws its offsets on the host per frame).
    """

    nms_rounds: int = 16
    graph: bool = False
    max_points: int = 400_000
    compile: bool = False
    voxel_seed: int = 0


@dataclass
class StaticRun:
    """The tensors of one fixed-shape run, in stage order (a captured run's are rewritten by every replay).

    ``packed`` is the one tensor copied to the host: boxes, NMS convergence and the deferred
    checks (:meth:`~centerpoint_deploy.postprocess.PaddedDetections.pack`, ``rows`` boxes per cloud).
    """

    clouds: list[Tensor]
    voxels: Voxels
    counts: VoxelCounts
    features: Tensor
    pillar_features: Tensor
    spatial_features: Tensor
    head_outputs: dict[str, Tensor]
    decoded: list[DecodedBoxes]
    packed: Tensor
    rows: int


class StaticPipeline:
    """The fixed-shape pipeline around an (encoder, head) backend pair; constructor as :class:`Detector`'s."""

    def __init__(self, config: ModelConfig, encoder: Backend, head: Backend, *, rot_y_axis_reference: bool = False,
                 device: torch.device | str | None = None, settings: StaticSettings = StaticSettings()) -> None:
        self.config, self.encoder, self.head = config, encoder, head
        self.rot_y_axis_reference = rot_y_axis_reference
        self.device = torch.device(device) if device is not None else encoder.device
        self.settings = settings
        if settings.nms_rounds < 1:
            raise ConfigError(f"nms_rounds = {settings.nms_rounds} is invalid: must be >= 1")
        self._node_voxelizer = node_voxelizer(config, settings.voxel_seed)
        if settings.graph and self._node_voxelizer is not None:
            raise ConfigError("voxelization.mode 'autoware' draws a shuffle offset per frame on the host; "
                              "it cannot run inside a captured CUDA graph (use graph=False)")
        if settings.graph:
            self._check_graph_support()
        self._head_names = contract.head_output_names(len(config.head.tasks))
        self._decorate = torch.compile(decorate, dynamic=False) if settings.compile else decorate
        self._suppress = torch.compile(suppress, dynamic=False) if settings.compile else suppress
        self._graphs: dict[tuple[int, int], tuple[PointBuffer, Captured[StaticRun]]] = {}

    def _check_graph_support(self) -> None:
        if self.device.type != "cuda":
            raise ConfigError(f"graph=True needs a CUDA device; this pipeline runs on '{self.device}'")
        if self.settings.max_points < 1:
            raise ConfigError(f"max_points = {self.settings.max_points} is invalid: must be >= 1")
        for part, backend in (("encoder", self.encoder), ("head", self.head)):
            if not backend.capturable:
                raise BackendError(f"graph=True captures PyTorch backends only; the {part} is '{backend.name}' "
                                   f"(use the static pipeline without graph for it)")

    def with_config(self, config: ModelConfig, *, voxel_seed: int | None = None) -> "StaticPipeline":
        """The same pipeline (backends, settings, seed unless given) for another model config, e.g. another grid."""
        settings = self.settings if voxel_seed is None else replace(self.settings, voxel_seed=voxel_seed)
        return StaticPipeline(config, self.encoder, self.head, rot_y_axis_reference=self.rot_y_axis_reference,
                              device=self.device, settings=settings)

    def load(self) -> "StaticPipeline":
        self.encoder.load()
        self.head.load()
        return self

    def close(self) -> None:
        self._graphs.clear()
        self.encoder.close()
        self.head.close()

    def __enter__(self) -> "StaticPipeline":
        return self.load()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- inference ------------------------------------------------------------------------------
    def __call__(self, points: Tensor | list[Tensor]) -> Detections | list[Detections]:
        """Boxes on the CPU: :class:`Detections` for a single ``Tensor[N, D]``, else one per cloud."""
        clouds = as_clouds(points)
        if self.settings.graph and self._fits_graph(clouds):
            detections = self._replay(clouds)
        else:
            detections = self.run_stages(clouds).detections
        return detections[0] if isinstance(points, Tensor) else detections

    def run_stages(self, points: Tensor | list[Tensor], hook: StageHook = no_hook) -> StageOutputs:
        """The uncaptured pipeline, ``hook(stage)`` after each stage; padded intermediates."""
        self.load()
        clouds = as_clouds(points)
        check_points(clouds, self.config, check_values=False)  # values: with the boxes
        run = self._body([upload(cloud, self.device) for cloud in clouds], hook, capturing=False)
        detections = self._finish(run, run.packed.cpu(), [int(c.shape[0]) for c in clouds])  # the one sync
        hook(OUTPUT)
        return StageOutputs(run.voxels, run.features, run.pillar_features, run.spatial_features, run.head_outputs,
                            detections, run.counts)

    def task_maps(self, head_outputs: dict[str, Tensor]) -> list[dict[str, Tensor]]:
        """A head backend's flat outputs per task on this device, plain mmdet3d convention (a post-processor's input)."""
        return task_maps(head_outputs, self.config, self.rot_y_axis_reference, self.device)

    def detect_from_head_outputs(self, head_outputs: dict[str, Tensor]) -> list[Detections]:
        """Boxes (exact NMS) from a head backend's flat outputs (``contract.head_output_names`` keys)."""
        return postprocess(self.task_maps(head_outputs), self.config)

    # ----- the captured pipeline -------------------------------------------------------------------
    def point_buffer(self, clouds: Sequence[Tensor]) -> PointBuffer:
        """A device buffer for ``len(clouds)`` clouds of :func:`point_capacity` rows."""
        return PointBuffer(len(clouds), self._buffer_rows(clouds), len(self.config.points.use_dim),
                           self.config.voxelization, self.device)

    def _buffer_rows(self, clouds: Sequence[Tensor]) -> int:
        return point_capacity(max(int(cloud.shape[0]) for cloud in clouds), self.settings.max_points)

    def capture(self, buffer: PointBuffer, *, segments: bool = False) -> Captured[StaticRun]:
        """The pipeline on ``buffer``'s clouds as CUDA graphs (one, or one per stage with ``segments``).

        The graphs start after the copy into the buffer (stage ``upload`` holds the deferred
        non-finite count) and end with the packed result on the device (stage ``output``). Loads
        the backends.
        """
        self.load()
        return capture(lambda hook: self._body(buffer.clouds, hook, capturing=True), self.device,
                       segments=segments, last=OUTPUT)

    def _fits_graph(self, clouds: list[Tensor]) -> bool:
        """Check types and shapes; False (with a warning) when a cloud exceeds ``max_points``."""
        check_points(clouds, self.config, check_values=False)
        sizes = [int(cloud.shape[0]) for cloud in clouds]
        if max(sizes) <= self.settings.max_points:
            return True
        warnings.warn(f"point clouds of {sizes} points exceed the CUDA graph's max_points={self.settings.max_points}; "
                      f"running the uncaptured static pipeline (raise max_points to capture such clouds)",
                      stacklevel=3)
        return False

    def _replay(self, clouds: list[Tensor]) -> list[Detections]:
        """One copy in, one replay, one copy out, then the checks."""
        key = (len(clouds), self._buffer_rows(clouds))
        if key not in self._graphs:  # one graph per batch size and buffer size, captured on first use
            buffer = self.point_buffer(clouds)
            self._graphs[key] = (buffer, self.capture(buffer))
        buffer, captured = self._graphs[key]
        buffer.load(clouds)
        captured.replay()
        return self._finish(captured.result, captured.result.packed.cpu(), [int(c.shape[0]) for c in clouds])

    # ----- the stages -----------------------------------------------------------------------------
    def _infer(self, backend: Backend, name: str, tensor: Tensor, capturing: bool) -> dict[str, Tensor]:
        """``backend`` on ``{name: tensor}``; inside a capture its bare network (no checks, timing or own graph)."""
        if capturing:
            return backend.forward_in_capture(tensor)
        return backend.infer({name: tensor.to(backend.device)})

    def _body(self, clouds: list[Tensor], hook: StageHook, capturing: bool) -> StaticRun:
        """Voxelize to the packed result on the device; nothing read on the host."""
        cfg = self.config
        nonfinite = count_nonfinite(clouds)
        hook(UPLOAD)
        if self._node_voxelizer is not None:
            voxels, counts = self._node_voxelizer.padded(clouds)
        else:
            voxels, counts = voxelize_padded(clouds, cfg.voxelization)
        hook(VOXELIZE)
        features = self._decorate(voxels, cfg)
        hook(DECORATE)
        pillars = self._infer(self.encoder, contract.ENCODER_INPUT, features, capturing)[contract.ENCODER_OUTPUT]
        pillars = pillars.to(self.device)
        hook(ENCODER)
        # the coords come from voxelize, so the (synchronising) range check is not needed
        bev = scatter_to_bev(pillars, voxels.coords, voxels.batch_size, cfg.bev_shape, check_coords=False,
                             channels_last=self.head.channels_last_input)
        hook(SCATTER)
        head_outputs = self._infer(self.head, contract.HEAD_INPUT, bev, capturing)
        hook(HEAD)
        decoded = decode_tasks(self.task_maps(head_outputs), cfg)
        hook(DECODE)
        keep, converged = self._suppress(decoded, cfg, self.settings.nms_rounds)
        hook(NMS)
        padded = merge_tasks(decoded, keep, converged, cfg.nms.post_max_size)
        checks = torch.cat([nonfinite, counts.table.flatten(), count_nonfinite_outputs(head_outputs, self._head_names)])
        return StaticRun(clouds, voxels, counts, features, pillars, bev, head_outputs, decoded,
                         padded.pack(extra=checks), padded.scores.shape[1])

    def _finish(self, run: StaticRun, host: Tensor, num_points: list[int]) -> list[Detections]:
        """Boxes on the host from ``run.packed`` copied there, after the deferred checks.

        Raises for non-finite points, a cloud without pillars or non-finite head outputs, warns
        for a ``max_voxels`` overflow, and redoes NMS exactly where the round budget was too small.
        """
        batch = len(num_points)
        detections, converged, values = unpack_host(host, batch, run.rows)
        raise_nonfinite(values[:batch], num_points)
        check_voxel_counts([values[batch + 3 * b: batch + 3 * b + 3] for b in range(batch)], self.config.voxelization,
                           num_points, stacklevel=4)
        raise_nonfinite_outputs(values[4 * batch:], self._head_names, self.head.name)
        if not all(converged):  # the round budget was too small for this frame: redo NMS exactly
            keep, done = suppress(run.decoded, self.config, None)
            detections = [d.to("cpu") for d in merge_tasks(run.decoded, keep, done, self.config.nms.post_max_size).unpad()]
        return detections
