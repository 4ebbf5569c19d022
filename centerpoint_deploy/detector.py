"""The detector: one shared pipeline around any (encoder, head) backend pair.

points -> voxelize -> decorate -> encoder -> scatter -> head -> decode -> NMS -> boxes.
Pre- and post-processing run in torch on the detector's device; only the two network parts
change with the backend, so backends can be compared stage by stage
(:meth:`Detector.run_stages`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from centerpoint_deploy import contract
from centerpoint_deploy.backends.base import Backend
from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.data.pointcloud import key_frame_points, read_points
from centerpoint_deploy.errors import BackendError, ConfigError
from centerpoint_deploy.pipeline_graph import PipelineGraph, PointBuffer, point_capacity
from centerpoint_deploy.postprocess import decode_tasks, merge_tasks, postprocess, suppress, unpack_host
from centerpoint_deploy.postprocess.rot_reference import undo_rot_y_axis_reference
from centerpoint_deploy.preprocess import (check_points, count_nonfinite, decorate, raise_nonfinite, scatter_to_bev,
                                          voxelize, voxelize_padded)
from centerpoint_deploy.preprocess.autoware_voxelize import NodeVoxelizer
from centerpoint_deploy.preprocess.voxelize import check_voxel_counts
from centerpoint_deploy.structures import Detections, Voxels


@dataclass
class StageOutputs:
    """Every intermediate result of one batch, for verification and debugging.

    Attributes:
        voxels: the pillars (``points [V, P, D]``, ``num_points [V]``, ``coords [V, 4]``).
        features: ``Tensor[V, P, F]`` encoder input (``input_features``).
        pillar_features: ``Tensor[V, 1, C]`` encoder output.
        spatial_features: ``Tensor[B, C, H, W]`` head input.
        head_outputs: the head's flat ``{output name: Tensor[B, ch, h, w]}`` as the backend
            returned it (still in the y-axis-reference convention when the export used it).
        detections: one :class:`Detections` per cloud.
    """

    voxels: Voxels
    features: Tensor
    pillar_features: Tensor
    spatial_features: Tensor
    head_outputs: dict[str, Tensor]
    detections: list[Detections]


#: The Detector's pipeline stages, in order (:meth:`Detector.stages`).
STAGES = ("upload", "voxelize", "decorate", "encoder", "scatter", "backbone_neck_head", "decode", "nms", "output")

#: A stage reads and writes the pipeline state: ``points`` in, ``detections`` out.
Stage = Callable[[dict[str, Any]], None]


def upload(cloud: Tensor, device: torch.device) -> Tensor:
    """``cloud`` on ``device``; a host -> GPU copy goes through pinned memory without blocking the host."""
    if cloud.device == device:
        return cloud
    if device.type == "cuda" and cloud.device.type == "cpu":
        return (cloud if cloud.is_pinned() else cloud.pin_memory()).to(device, non_blocking=True)
    return cloud.to(device)


class Detector:
    """CenterPoint inference with shared pre/post-processing.

    Args:
        config: the model.
        encoder: backend of ``pts_voxel_encoder`` (``input_features`` -> ``pillar_features``).
        head: backend of ``pts_backbone_neck_head`` (``spatial_features`` -> six maps per task).
        rot_y_axis_reference: the head emits AWML's y-axis-reference ``dim``/``rot``; undone
            before decoding.
        device: where pre/post-processing run; defaults to the encoder's device.
        static_shapes: the GPU-resident pipeline: fixed-size tensors from points to boxes
            (``max_voxels`` pillars per cloud, padded box lists, a fixed NMS round budget), so
            no stage reads anything on the host; input checks and NMS convergence are read
            together with the boxes in one device -> host copy at the end, and the boxes are
            returned on the CPU. Same boxes as the default path (an NMS budget too small for a
            frame falls back to the exact iteration). Off by default: the default path trims
            every tensor to its real size, which verification compares stage by stage.
        nms_rounds: NMS round budget of the static path.
        graph: run the static path as CUDA graphs: each call copies the clouds into a device
            buffer, replays the graph (voxelize to NMS) and copies the packed boxes and checks
            back; same boxes, checks and errors as the static path. One graph is captured per
            batch size and buffer size, on the first call that needs it; the buffer holds
            :func:`~centerpoint_deploy.pipeline_graph.point_capacity` rows per cloud (the next
            power of two of the largest cloud, at most ``max_points``), so a sensor's frames
            share one or two graphs and small clouds do not pay for a large buffer.
            Needs ``static_shapes``, a CUDA device and PyTorch backends (their networks are
            captured through ``forward_in_capture``). :meth:`stages` and :meth:`run_stages`
            still run the uncaptured static path, stage by stage.
        max_points: the most rows per cloud of a graph's point buffer. A call with a larger
            cloud runs the uncaptured static path instead (same results, slower) and warns.
        compile: ``torch.compile`` the elementwise-heavy pipeline steps, decoration and the
            fixed-round NMS (each then a few fused kernels instead of dozens); needs
            ``static_shapes`` (fixed shapes compile once). The first calls compile.
        voxel_seed: with ``config.voxelization.mode == "autoware"``, the seed of the node's
            per-frame shuffle offsets (:class:`~centerpoint_deploy.preprocess.autoware_voxelize.NodeVoxelizer`);
            the same seed and call order give the same pillars.

    Use as ``with Detector(...) as detector: detections = detector(points)``; calling it
    outside ``with`` loads the backends on first use.
    """

    def __init__(self, config: ModelConfig, encoder: Backend, head: Backend, *,
                 rot_y_axis_reference: bool = False, device: torch.device | str | None = None,
                 static_shapes: bool = False, nms_rounds: int = 16, graph: bool = False,
                 max_points: int = 400_000, compile: bool = False, voxel_seed: int = 0) -> None:
        if nms_rounds < 1:
            raise ConfigError(f"nms_rounds = {nms_rounds} is invalid: must be >= 1")
        if compile and not static_shapes:
            raise ConfigError("compile=True compiles the fixed-shape pipeline; set static_shapes=True as well")
        self.config = config
        self.encoder = encoder
        self.head = head
        self.rot_y_axis_reference = rot_y_axis_reference
        self.device = torch.device(device) if device is not None else encoder.device
        self.static_shapes = static_shapes
        self.nms_rounds = nms_rounds
        self.graph = graph
        self.max_points = max_points
        self.compile = compile
        self._decorate_fn = torch.compile(decorate, dynamic=False) if compile else decorate
        self._suppress_fn = torch.compile(suppress, dynamic=False) if compile else suppress
        self._graphs: dict[tuple[int, int], PipelineGraph] = {}  # (clouds, buffer rows) -> captured pipeline
        self.voxel_seed = voxel_seed
        self._node_voxelizer = (NodeVoxelizer(config.voxelization, seed=voxel_seed)
                                if config.voxelization.mode == "autoware" else None)
        if graph and self._node_voxelizer is not None:
            raise ConfigError("voxelization.mode 'autoware' draws a shuffle offset per frame on the host; "
                              "it cannot run inside a captured CUDA graph (use graph=False)")
        if graph:
            self._check_graph_support()

    def _check_graph_support(self) -> None:
        if not self.static_shapes:
            raise ConfigError("graph=True captures the fixed-shape pipeline; set static_shapes=True as well")
        if self.device.type != "cuda":
            raise ConfigError(f"graph=True needs a CUDA device; this detector runs on '{self.device}'")
        if self.max_points < 1:
            raise ConfigError(f"max_points = {self.max_points} is invalid: must be >= 1")
        for part, backend in (("encoder", self.encoder), ("head", self.head)):
            if not callable(getattr(backend, "forward_in_capture", None)):
                raise BackendError(f"graph=True captures PyTorch backends only; the {part} is '{backend.name}' "
                                   f"(use static_shapes=True without graph for it)")

    # ----- lifecycle -------------------------------------------------------------------
    def load(self) -> "Detector":
        self.encoder.load()
        self.head.load()
        return self

    def close(self) -> None:
        self._graphs.clear()
        self.encoder.close()
        self.head.close()

    def __enter__(self) -> "Detector":
        return self.load()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- inference -------------------------------------------------------------------
    def __call__(self, points: Tensor | list[Tensor]) -> Detections | list[Detections]:
        """Detect boxes.

        Args:
            points: ``Tensor[N, D]`` or a list of them (``D = len(config.points.use_dim)``).

        Returns:
            :class:`Detections` for a single tensor, else one per cloud.
        """
        clouds = [points] if isinstance(points, Tensor) else list(points)
        if self.graph and self._fits_graph(clouds):
            detections = self._replay(clouds)
        else:
            detections = self.run_pipeline(clouds)["detections"]
        return detections[0] if isinstance(points, Tensor) else detections

    def run_stages(self, points: Tensor | list[Tensor]) -> StageOutputs:
        """Run the whole pipeline and keep every intermediate tensor (padded ones with ``static_shapes``)."""
        state = self.run_pipeline(points)
        return StageOutputs(
            voxels=state["voxels"],
            features=state["features"],
            pillar_features=state["pillar_features"],
            spatial_features=state["spatial_features"],
            head_outputs=state["head_outputs"],
            detections=state["detections"],
        )

    def run_pipeline(self, points: Tensor | list[Tensor]) -> dict[str, Any]:
        """Run :meth:`stages` in order on ``points``; return the final pipeline state."""
        state: dict[str, Any] = {"points": [points] if isinstance(points, Tensor) else list(points)}
        for _, stage in self.stages():
            stage(state)
        return state

    def stages(self) -> list[tuple[str, Stage]]:
        """The pipeline as named steps over one state dict (:data:`STAGES` order).

        Running them in order is exactly what a call does; the benchmark times them one by one.
        Loads the backends.
        """
        self.load()
        return list(zip(STAGES, (self._upload, self._voxelize, self._decorate, self._encode, self._scatter,
                                 self._dense, self._decode, self._nms, self._output)))

    # ----- the captured pipeline ----------------------------------------------------------
    def _fits_graph(self, clouds: list[Tensor]) -> bool:
        """Check types and shapes; False (with a warning) when a cloud exceeds ``max_points``."""
        check_points(clouds, self.config, check_values=False)
        sizes = [int(cloud.shape[0]) for cloud in clouds]
        if max(sizes) <= self.max_points:
            return True
        warnings.warn(f"point clouds of {sizes} points exceed the CUDA graph's max_points={self.max_points}; "
                      f"running the uncaptured static pipeline (raise max_points to capture such clouds)",
                      stacklevel=3)
        return False

    def _replay(self, clouds: list[Tensor]) -> list[Detections]:
        """The static pipeline by graph replay: one copy in, one replay, one copy out, then the checks."""
        self.load()
        key = (len(clouds), self._buffer_rows(clouds))
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._graphs[key] = PipelineGraph(self._captured_body, self.point_buffer(clouds))
        host = graph(clouds)
        return self._finish(graph.state, host, [int(cloud.shape[0]) for cloud in clouds], stacklevel=5)

    def captured_stages(self) -> list[tuple[str, Stage]]:
        """What ``graph=True`` records, as named steps over a state dict that starts as ``{"clouds": [...]}``.

        The static stages from voxelize to NMS, plus ``upload`` (here only the deferred
        non-finite count: the copy into the point buffer precedes the replay) and ``output``
        (``state["packed"]``, the tensor the one device -> host copy reads). The benchmark
        captures them one by one to time each stage inside a graph. Loads the backends.
        """
        self.load()
        return [("upload", self._count_nonfinite), ("voxelize", self._voxelize), ("decorate", self._decorate),
                ("encoder", self._encode), ("scatter", self._scatter), ("backbone_neck_head", self._dense),
                ("decode", self._decode), ("nms", self._nms), ("output", self._pack_state)]

    def point_buffer(self, clouds: Sequence[Tensor]) -> PointBuffer:
        """A device buffer for a graph of ``clouds``: ``len(clouds)`` clouds of :func:`point_capacity` rows."""
        return PointBuffer(len(clouds), self._buffer_rows(clouds), len(self.config.points.use_dim),
                           self.config.voxelization, self.device)

    def _buffer_rows(self, clouds: Sequence[Tensor]) -> int:
        return point_capacity(max(int(cloud.shape[0]) for cloud in clouds), self.max_points)

    def _captured_body(self, clouds: list[Tensor]) -> dict[str, Any]:
        """What the graph records: :meth:`captured_stages` in order."""
        state: dict[str, Any] = {"clouds": clouds, "capturing": True}
        for _, stage in self.captured_stages():
            stage(state)
        return state

    def _infer(self, backend: Backend, name: str, tensor: Tensor, state: dict[str, Any]) -> dict[str, Tensor]:
        """``backend`` on ``{name: tensor}``; inside a capture its bare network (no checks, timing or own graph)."""
        if state.get("capturing"):
            return backend.forward_in_capture(tensor)  # type: ignore[attr-defined]
        return backend.infer({name: tensor.to(backend.device)})

    # ----- stages -----------------------------------------------------------------------
    def _upload(self, state: dict[str, Any]) -> None:
        check_points(state["points"], self.config, check_values=not self.static_shapes)
        state["clouds"] = [upload(cloud, self.device) for cloud in state["points"]]
        if self.static_shapes:
            self._count_nonfinite(state)

    def _count_nonfinite(self, state: dict[str, Any]) -> None:
        state["nonfinite"] = count_nonfinite(state["clouds"])  # read with the boxes

    def _voxelize(self, state: dict[str, Any]) -> None:
        if self._node_voxelizer is not None:
            if self.static_shapes:
                state["voxels"], state["voxel_counts"] = self._node_voxelizer.padded(state["clouds"])
            else:
                state["voxels"] = self._node_voxelizer(state["clouds"])
        elif self.static_shapes:
            state["voxels"], state["voxel_counts"] = voxelize_padded(state["clouds"], self.config.voxelization)
        else:
            state["voxels"] = voxelize(state["clouds"], self.config.voxelization)

    def _decorate(self, state: dict[str, Any]) -> None:
        state["features"] = self._decorate_fn(state["voxels"], self.config)

    def _encode(self, state: dict[str, Any]) -> None:
        encoded = self._infer(self.encoder, contract.ENCODER_INPUT, state["features"], state)
        state["pillar_features"] = encoded[contract.ENCODER_OUTPUT].to(self.device)

    def _scatter(self, state: dict[str, Any]) -> None:
        voxels = state["voxels"]
        # the coords come from voxelize, so the (synchronising) range check is not needed
        state["spatial_features"] = scatter_to_bev(state["pillar_features"], voxels.coords, voxels.batch_size,
                                                   self.config.bev_shape, check_coords=False,
                                                   channels_last=self.head.channels_last_input)

    def _dense(self, state: dict[str, Any]) -> None:
        state["head_outputs"] = self._infer(self.head, contract.HEAD_INPUT, state["spatial_features"], state)

    def _decode(self, state: dict[str, Any]) -> None:
        state["decoded"] = decode_tasks(self._task_maps(state["head_outputs"]), self.config)

    def _nms(self, state: dict[str, Any]) -> None:
        rounds = self.nms_rounds if self.static_shapes else None
        state["keep"], state["nms_converged"] = self._suppress_fn(state["decoded"], self.config, rounds)

    def _output(self, state: dict[str, Any]) -> None:
        if not self.static_shapes:
            padded = merge_tasks(state["decoded"], state["keep"], state["nms_converged"], self.config.nms.post_max_size)
            state["detections"] = padded.unpad()
            return
        host = self._pack(state).cpu()  # the one synchronisation
        state["detections"] = self._finish(state, host, [int(cloud.shape[0]) for cloud in state["clouds"]],
                                           stacklevel=6)

    def _pack_state(self, state: dict[str, Any]) -> None:
        state["packed"] = self._pack(state)

    def _pack(self, state: dict[str, Any]) -> Tensor:
        """Merged boxes, NMS convergence and the deferred input checks in one device tensor (see ``_finish``)."""
        padded = merge_tasks(state["decoded"], state["keep"], state["nms_converged"], self.config.nms.post_max_size)
        state["rows"] = padded.scores.shape[1]
        checks = torch.cat([state["nonfinite"], state["voxel_counts"].table.flatten()])
        return padded.pack(extra=checks)

    def _finish(self, state: dict[str, Any], host: Tensor, num_points: list[int], stacklevel: int) -> list[Detections]:
        """Boxes on the host from ``_pack``'s tensor copied there, after the input checks.

        Raises for non-finite points or a cloud without pillars, warns for a ``max_voxels``
        overflow (``stacklevel`` frames up, the caller), and redoes NMS exactly where the round
        budget was too small.
        """
        batch = len(num_points)
        detections, converged, values = unpack_host(host, batch, state["rows"])
        raise_nonfinite(values[:batch], num_points)
        check_voxel_counts([values[batch + 3 * b: batch + 3 * b + 3] for b in range(batch)], self.config.voxelization,
                           num_points, stacklevel=stacklevel)
        if not all(converged):  # the round budget was too small for this frame: redo NMS exactly
            keep, done = suppress(state["decoded"], self.config, None)
            detections = merge_tasks(state["decoded"], keep, done, self.config.nms.post_max_size).unpad()
            detections = [d.to("cpu") for d in detections]
        return detections

    def _task_maps(self, head_outputs: dict[str, Tensor]) -> list[dict[str, Tensor]]:
        num_tasks = len(self.config.head.tasks)
        missing = [name for name in contract.head_output_names(num_tasks) if name not in head_outputs]
        if missing:
            raise BackendError(f"head outputs lack {missing} for {num_tasks} task(s); got {sorted(head_outputs)}")
        on_device = {name: tensor.to(self.device) for name, tensor in head_outputs.items()}
        task_maps = contract.split_tasks(on_device, num_tasks)
        if self.rot_y_axis_reference:
            task_maps = [undo_rot_y_axis_reference(maps) for maps in task_maps]
        return task_maps

    def task_maps(self, head_outputs: dict[str, Tensor]) -> list[dict[str, Tensor]]:
        """A head backend's flat outputs as one dict of maps per task, on the detector's device, in the
        plain mmdet3d convention (what a post-processor takes)."""
        return self._task_maps(head_outputs)

    def detect_from_head_outputs(self, head_outputs: dict[str, Tensor]) -> list[Detections]:
        """Boxes from a head backend's flat outputs (``contract.head_output_names`` keys).

        Undoes the y-axis-reference convention when the detector was built with it, splits
        the outputs per task and post-processes them on the detector's device (exact NMS).
        """
        return postprocess(self._task_maps(head_outputs), self.config)


def detect_point_files(detector: Detector, paths: Sequence[Path | str], *,
                       keep_time_lag: bool = False, load_dim: int | None = None) -> dict[str, list[dict]]:
    """Run ``detector`` on point files one at a time (batch 1, as Autoware does).

    Each file is read with ``load_dim`` (default ``config.points.load_dim``) floats per point
    and reduced to the model's columns by :func:`~centerpoint_deploy.data.pointcloud.key_frame_points` (time lag
    0 unless ``keep_time_lag``).

    Returns:
        ``{path: [{"box": [x, y, z, l, w, h, yaw, vx, vy], "score": s, "label": name}, ...]}``
        in the order of ``paths``, boxes by descending score.
    """
    config = detector.config
    results: dict[str, list[dict]] = {}
    for path in paths:
        raw = read_points(path, load_dim or config.points.load_dim)
        points = torch.from_numpy(key_frame_points(raw, config.points, keep_time_lag=keep_time_lag))
        results[str(path)] = detector(points).to_records(config.class_names)
    return results
