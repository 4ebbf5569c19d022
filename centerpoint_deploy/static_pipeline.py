"""The GPU-resident pipeline: fixed-size tensors from points to boxes, optionally one CUDA graph.

Every tensor has a fixed size (``max_voxels`` pillars per cloud, padded box lists, a fixed NMS
round budget), so no stage reads anything on the host; the input checks (non-finite points,
clouds without pillars, ``max_voxels`` overflow), the non-finite head outputs and NMS
convergence travel with the boxes in one device -> host copy at the end and are judged there.
Same boxes as :class:`~centerpoint_deploy.detector.Detector` (an NMS budget too small for a frame
falls back to the exact iteration), the same typed interface.

With ``graph`` the whole pipeline is captured (:func:`~centerpoint_deploy.cuda_graphs.capture`)
once per batch size and point-buffer size (:mod:`~centerpoint_deploy.point_buffer`): a call is
one copy in, one replay, one copy out. Backends that cannot be captured (ONNX Runtime's) run
between three captured parts instead (:class:`HybridRun`: pre-processing, scatter,
post-processing), their outputs copied into the buffers the next part reads. With ``compile``
the steps between the networks are compiled (``StaticSettings.compile``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Callable, Hashable, Sequence, TypeVar

import torch
from torch import Tensor

from centerpoint_deploy import contract
from centerpoint_deploy.backends.base import Backend
from centerpoint_deploy.compile_cache import release_compile_workers
from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.cuda_graphs import Captured, capture
from centerpoint_deploy.device import copy_to_host
from centerpoint_deploy.errors import BackendError, ConfigError
from centerpoint_deploy.point_buffer import DEFAULT_MAX_POINTS, PointBuffer, pillar_capacity, point_capacity
from centerpoint_deploy.postprocess import (DecodedBoxes, HostResult, decode_tasks, merge_tasks, postprocess, suppress,
                                            unpack_host)
from centerpoint_deploy.postprocess.node_params import NodePostprocessParams
from centerpoint_deploy.preprocess import check_points, count_nonfinite, decorate, raise_nonfinite, scatter_to_bev
from centerpoint_deploy.preprocess.scatter import BevCanvas
from centerpoint_deploy.preprocess.voxelize import VoxelCounts, check_voxel_counts, voxelize_padded
from centerpoint_deploy.stages import (DECODE, DECORATE, ENCODER, HEAD, NMS, OUTPUT, SCATTER, UPLOAD, VOXELIZE,
                                       BackendOwner, StageHook, StageOutputs, as_clouds, count_nonfinite_outputs,
                                       no_hook, node_voxelizer, raise_nonfinite_outputs, task_maps, upload)
from centerpoint_deploy.structures import Detections, Voxels

T = TypeVar("T")
R = TypeVar("R")
#: A captured graph's key: (batch size, point buffer rows per cloud, pillar rows per cloud).
GraphKey = tuple[int, int, int]


@dataclass(frozen=True)
class StaticSettings:
    """How the fixed-shape pipeline runs.

    Attributes:
        nms_rounds: the NMS round budget (>= 1).
        graph: capture the pipeline as a CUDA graph (a CUDA device; with backends that cannot
            be captured, the parts around them, :class:`HybridRun`).
            :meth:`StaticPipeline.run_stages` still runs it uncaptured.
        max_points: the most rows per cloud of a graph's point buffer; a larger cloud runs
            uncaptured (same results, slower) and warns.
        compile: ``torch.compile`` decoration, decode, the fixed-round NMS, the packing of the
            result, what :meth:`StaticPipeline.on_head_outputs` records (a few fused kernels each)
            and, in captured graphs (fixed point-buffer sizes), the non-finite count and voxelization.
        voxel_seed: the shuffle seed of ``voxelization.mode == "autoware"`` (not with ``graph``:
            the node draws its offsets on the host per frame).
    """

    nms_rounds: int = 16
    graph: bool = False
    max_points: int = DEFAULT_MAX_POINTS
    compile: bool = False
    voxel_seed: int = 0


@dataclass
class StaticRun:
    """The tensors of one fixed-shape run, in stage order (a captured run's are rewritten by every replay).

    ``packed`` is the one tensor copied to the host: boxes, NMS convergence and the deferred
    checks (:meth:`~centerpoint_deploy.postprocess.PaddedDetections.pack`, ``rows`` boxes per cloud).
    ``canvas``: the kept BEV canvas a captured run scatters into (``spatial_features`` is a view
    of it), held here for as long as the graph that writes it; ``None`` for a fresh canvas.
    ``pillar_rows``: the pillar rows per cloud the encoder ran on (``max_voxels``, or fewer in a
    graph: :func:`~centerpoint_deploy.point_buffer.pillar_capacity`).
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
    pillar_rows: int
    canvas: BevCanvas | None = None


@dataclass
class _PreRun:
    """Pre-processing's tensors (stages ``upload`` to ``decorate``)."""

    nonfinite: Tensor
    voxels: Voxels
    counts: VoxelCounts
    features: Tensor


class HybridRun:
    """The fixed-shape pipeline as three CUDA graphs with the (uncapturable) backends run between
    them: pre-processing, then the encoder on each cloud's kept pillars only (reading their counts
    is the one extra synchronisation; the padding rows would cost the encoder ``max_voxels``
    pillars a cloud), its output copied into the buffer the scatter graph reads, then the head,
    its outputs copied into the buffers the post-processing graph reads. The padding rows of that
    buffer keep what the first run wrote: the scatter sends padding pillars to spare entries.

    Same interface as a :class:`~centerpoint_deploy.cuda_graphs.Captured`: :meth:`replay`, ``result``.
    """

    def __init__(self, pipeline: "StaticPipeline", buffer: PointBuffer) -> None:
        self.pipeline = pipeline
        self.pre = capture(lambda _: pipeline._pre(buffer.clouds, no_hook, buffered=True), pipeline.device)
        self.pre.replay()  # recording runs nothing: the encoder's first input comes from a replay
        self.pillars = self._encode().clone()
        self.canvas = pipeline._kept_canvas(len(buffer.clouds))
        self.scatter = capture(lambda _: pipeline._scatter(self.pillars, self.pre.result.voxels, self.canvas),
                               pipeline.device)
        self.scatter.replay()
        self.head_outputs = {name: t.clone() for name, t in self._head().items()}
        self.post = capture(lambda _: pipeline._post(buffer.clouds, self.pre.result, self.pillars,
                                                     self.scatter.result, self.head_outputs, no_hook),
                            pipeline.device)
        self.result = self.post.result

    def _encode(self) -> Tensor:
        pipeline = self.pipeline
        return pipeline._infer(pipeline.encoder, contract.ENCODER_INPUT, self.pre.result.features,
                               False)[contract.ENCODER_OUTPUT].to(pipeline.device)

    def _head(self) -> dict[str, Tensor]:
        pipeline = self.pipeline
        return pipeline._infer(pipeline.head, contract.HEAD_INPUT, self.scatter.result, False)

    def _encode_kept(self) -> None:
        """The encoder on each cloud's kept pillars, into their rows of :attr:`pillars`."""
        pipeline, pre = self.pipeline, self.pre.result
        rows = pipeline.config.voxelization.max_voxels
        for index, kept in enumerate(pre.counts.num_voxels.tolist()):  # synchronises
            if kept == 0:  # no pillar: refused after the run (check_voxel_counts)
                continue
            block = slice(index * rows, index * rows + kept)
            out = pipeline._infer(pipeline.encoder, contract.ENCODER_INPUT, pre.features[block], False)
            self.pillars[block].copy_(out[contract.ENCODER_OUTPUT])

    def replay(self) -> None:
        """One run: three replays and the two backends in between (queued on the current stream,
        after one read of the pillar counts)."""
        self.pre.replay()
        self._encode_kept()
        self.scatter.replay()
        for name, tensor in self._head().items():
            self.head_outputs[name].copy_(tensor)
        self.post.replay()


class StaticPipeline(BackendOwner):
    """The fixed-shape pipeline around an (encoder, head) backend pair; constructor as :class:`Detector`'s
    (``node_params`` too), with ``settings`` for the fixed-shape choices."""

    def __init__(self, config: ModelConfig, encoder: Backend, head: Backend, *, rot_y_axis_reference: bool = False,
                 device: torch.device | str | None = None, settings: StaticSettings = StaticSettings(),
                 node_params: NodePostprocessParams | None = None) -> None:
        self.config, self.encoder, self.head = config, encoder, head
        self.node_params = node_params
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
        self._count_nonfinite = self._compiled(count_nonfinite)
        self._voxelize = self._compiled(voxelize_padded)
        self._decorate = self._compiled(decorate)
        self._decode = self._compiled(self._decode_outputs)
        self._suppress = self._compiled(suppress)
        self._pack = self._compiled(self._pack_result)
        self._compiled_on_outputs: dict[Hashable, Callable] = {}  # see on_head_outputs
        # graphs by (batch size, point buffer rows, pillar rows); one buffer per (batch size, rows)
        self._graphs: dict[GraphKey, Captured[StaticRun] | HybridRun] = {}
        self._buffers: dict[tuple[int, int], PointBuffer] = {}
        self._pillar_rows: dict[tuple[int, int], int] = {}  # what the next graph of a buffer size gets
        self._replays: dict[GraphKey, int] = {}  # replays of each graph so far
        self._on_outputs: dict[tuple[GraphKey, Hashable], _SideGraph] = {}  # see on_head_outputs
        self._warned_uncaptured = False

    def _compiled(self, fn: Callable[..., T]) -> Callable[..., T]:
        """``fn`` through ``torch.compile`` (fixed shapes) with ``settings.compile``, else ``fn``."""
        return torch.compile(fn, dynamic=False) if self.settings.compile else fn

    def _check_graph_support(self) -> None:
        if self.device.type != "cuda":
            raise ConfigError(f"graph=True needs a CUDA device; this pipeline runs on '{self.device}'")
        if self.settings.max_points < 1:
            raise ConfigError(f"max_points = {self.settings.max_points} is invalid: must be >= 1")
        capturable = {self.encoder.capturable, self.head.capturable}
        if len(capturable) != 1:
            raise BackendError(f"graph=True captures both backends or neither; the encoder is '{self.encoder.name}', "
                               f"the head '{self.head.name}'")

    @property
    def captures_backends(self) -> bool:
        """The backends run inside the graph (PyTorch's), not between its parts (:class:`HybridRun`)."""
        return self.encoder.capturable and self.head.capturable

    def with_config(self, config: ModelConfig, *, voxel_seed: int | None = None) -> "StaticPipeline":
        """The same pipeline (backends, settings, seed unless given) for another model config, e.g. another grid."""
        settings = self.settings if voxel_seed is None else replace(self.settings, voxel_seed=voxel_seed)
        return StaticPipeline(config, self.encoder, self.head, rot_y_axis_reference=self.rot_y_axis_reference,
                              device=self.device, settings=settings, node_params=self.node_params)

    def close(self) -> None:
        self._graphs.clear()  # captured graphs hold the backends' buffers
        self._buffers.clear()
        self._on_outputs.clear()
        super().close()

    # ----- inference ------------------------------------------------------------------------------
    def __call__(self, points: Tensor | list[Tensor]) -> Detections | list[Detections]:
        """Boxes on the CPU: :class:`Detections` for a single ``Tensor[N, D]``, else one per cloud."""
        detections = self.detect_with_head_outputs(points)[1]
        return detections[0] if isinstance(points, Tensor) else detections

    def detect_with_head_outputs(self, points: Tensor | list[Tensor]) -> tuple[dict[str, Tensor], list[Detections]]:
        """The head outputs and one :class:`Detections` per cloud (on the CPU) made from them: with
        ``graph`` one replay, whose head outputs live in the graph's memory (read them before the
        next call); else :meth:`run_stages`."""
        launched = self.launch(points)
        detections = launched.detections()
        return launched.head_outputs_again(), detections

    def launch(self, points: Tensor | list[Tensor]) -> "LaunchedRun":
        """Queue one batch (with ``graph``: one copy in, one replay, the packed result's copy out)
        without waiting for it; :meth:`LaunchedRun.detections` reads the boxes. A loop can queue
        the next batch first, so that reading one batch's boxes overlaps the device's work on the
        next. Without ``graph`` (or for clouds over ``max_points``) the batch runs at once."""
        clouds = as_clouds(points)
        if not (self.settings.graph and self._fits_graph(clouds)):
            stages = self.run_stages(clouds)
            return LaunchedRun(self, clouds, stages.head_outputs, finished=stages.detections)
        size = (len(clouds), self._buffer_rows(clouds))
        if size not in self._buffers:
            self._buffers[size] = self.point_buffer(clouds)
        buffer = self._buffers[size]
        buffer.load(clouds)
        if size not in self._pillar_rows:
            self._pillar_rows[size] = self.pillar_rows(buffer)
        key = (*size, self._pillar_rows[size])
        if key not in self._graphs:  # one graph per batch size, buffer size and pillar rows, captured on first use
            self.load()
            self._graphs[key] = self.capture(buffer, pillar_rows=key[2]) if self.captures_backends \
                else HybridRun(self, buffer)
            self._replays[key] = 0
        captured = self._graphs[key]
        captured.replay()
        self._replays[key] += 1
        return LaunchedRun(self, clouds, captured.result.head_outputs, run=captured.result, graph=key)

    def run_stages(self, points: Tensor | list[Tensor], hook: StageHook = no_hook) -> StageOutputs:
        """The uncaptured pipeline, ``hook(stage)`` after each stage; padded intermediates."""
        self.load()
        clouds = as_clouds(points)
        check_points(clouds, self.config, check_values=False)  # values: with the boxes
        run = self._body([upload(cloud, self.device) for cloud in clouds], hook, capturing=False)
        detections = self._finish(run, unpack_host(run.packed.cpu(), len(clouds), run.rows),  # the one sync
                                  [int(c.shape[0]) for c in clouds])
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

    def capture(self, buffer: PointBuffer, *, segments: bool = False,
                pillar_rows: int | None = None) -> Captured[StaticRun]:
        """The pipeline on ``buffer``'s clouds as CUDA graphs (one, or one per stage with ``segments``).

        The graphs start after the copy into the buffer (stage ``upload`` holds the deferred
        non-finite count) and end with the packed result on the device (stage ``output``); the
        encoder runs on ``pillar_rows`` rows per cloud (default :meth:`pillar_rows` of the clouds
        in ``buffer`` now). Loads the backends.
        """
        self.load()
        canvas = self._kept_canvas(len(buffer.clouds))
        rows = self.pillar_rows(buffer) if pillar_rows is None else pillar_rows
        captured = capture(lambda hook: self._body(buffer.clouds, hook, capturing=True, canvas=canvas,
                                                   pillar_rows=rows), self.device, segments=segments, last=OUTPUT)
        release_compile_workers()  # compiled during the warm-up runs; the pool would compete with the replays
        return captured

    def pillar_rows(self, buffer: PointBuffer) -> int:
        """Pillar rows per cloud for a graph of ``buffer``'s clouds: :func:`pillar_capacity` of the
        most pillars among the clouds in it now (one voxelization and one synchronisation), or
        ``max_voxels`` with backends run between the graph's parts (they see only kept pillars)."""
        cfg = self.config.voxelization
        if not self.captures_backends:
            return cfg.max_voxels
        kept = int(voxelize_padded(buffer.clouds, cfg)[1].num_voxels.max())
        return pillar_capacity(kept, cfg.max_voxels)

    def _grow_pillar_rows(self, graph: GraphKey, pillars: int) -> None:
        """A cloud of ``graph``'s buffer size had ``pillars`` kept pillars, more than its rows: the next
        graph of that size gets room for them."""
        size = graph[:2]
        self._pillar_rows[size] = max(self._pillar_rows.get(size, 0),
                                      pillar_capacity(pillars, self.config.voxelization.max_voxels))

    def _kept_canvas(self, batch_size: int) -> BevCanvas | None:
        """The BEV canvas a graph keeps between replays (a channels-last head), else ``None``: a
        fresh NCHW canvas per run (:func:`scatter_to_bev`)."""
        return BevCanvas(batch_size, self.config.bev_shape) if self.head.channels_last_input else None

    def _fits_graph(self, clouds: list[Tensor]) -> bool:
        """Check types and shapes; False (with a warning) when a cloud exceeds ``max_points``."""
        check_points(clouds, self.config, check_values=False)
        sizes = [int(cloud.shape[0]) for cloud in clouds]
        if max(sizes) <= self.settings.max_points:
            return True
        if not self._warned_uncaptured:  # once: a dataset of such clouds would repeat it every frame
            self._warned_uncaptured = True
            warnings.warn(f"point clouds of {sizes} points exceed the CUDA graph's max_points="
                          f"{self.settings.max_points}; running them with the uncaptured static pipeline (raise "
                          f"max_points to capture such clouds)", stacklevel=3)
        return False

    def on_head_outputs(self, launched: "LaunchedRun", key: Hashable, fn: Callable[[dict[str, Tensor]], T],
                        then: Callable[[T], R]) -> R:
        """``then(fn(launched.head_outputs))``, where ``then`` queues what reads ``fn``'s result (e.g. its
        copy to the host). Call it before the pipeline's next launch.

        After a graph replay ``fn`` is recorded once per graph and ``key`` as a CUDA graph on a copy
        of the head outputs, then replayed with ``then`` on a side stream (one launch instead of
        ``fn``'s kernels one by one from Python). The copy is made on the pipeline's stream right
        after the replay (a recorded graph too: one launch for all outputs), and the next copy waits
        until the side stream has read the last one, so ``fn``'s small kernels overlap the
        pipeline's next replay instead of delaying it; the side stream has the high priority, so
        that they run as soon as their copy is done rather than behind that replay's kernels
        (the loop waits for their result while the next replay runs). ``fn``
        must have fixed shapes and read nothing on the host; its result lives in the recorded
        graph's memory until the next call, so ``then`` must copy out what is kept. ``key`` names
        what ``fn`` computes: with ``settings.compile`` the first ``fn`` of a key is compiled and
        recorded for every later graph.
        """
        if launched.graph is None:
            return then(fn(launched.head_outputs))
        if not launched.current:
            raise BackendError("on_head_outputs after a later replay of the same graph: its head outputs are gone")
        entry = (launched.graph, key)
        if entry not in self._on_outputs:
            body = self._compiled_on_outputs.setdefault(key, self._compiled(fn))
            inputs = {name: tensor.clone() for name, tensor in launched.head_outputs.items()}
            outputs = launched.head_outputs  # the graph's own memory: the same tensors at every replay

            def copy_in(_: object) -> None:
                for name, tensor in outputs.items():
                    inputs[name].copy_(tensor)

            self._on_outputs[entry] = _SideGraph(inputs, capture(copy_in, self.device),
                                                 capture(lambda _: body(inputs), self.device),
                                                 torch.cuda.Stream(self.device, priority=_HIGH_PRIORITY))
        side = self._on_outputs[entry]
        main = torch.cuda.current_stream(self.device)
        main.wait_event(side.read)  # the side stream's last replay has read its inputs
        side.copy_in.replay()
        side.copied.record(main)
        side.stream.wait_event(side.copied)
        with torch.cuda.stream(side.stream):
            side.captured.replay()
            result = then(side.captured.result)
            side.read.record(side.stream)
        return result

    # ----- the stages -----------------------------------------------------------------------------
    def _infer(self, backend: Backend, name: str, tensor: Tensor, capturing: bool) -> dict[str, Tensor]:
        """``backend`` on ``{name: tensor}``; inside a capture its bare network (no checks, timing or own graph)."""
        if capturing:
            return backend.forward_in_capture(tensor)
        return backend.infer({name: tensor.to(backend.device)})

    def _body(self, clouds: list[Tensor], hook: StageHook, capturing: bool,
              canvas: BevCanvas | None = None, pillar_rows: int | None = None) -> StaticRun:
        """Voxelize to the packed result on the device; nothing read on the host (``canvas``: the
        kept BEV canvas of a captured run; ``pillar_rows``: pillar rows per cloud, default ``max_voxels``)."""
        pre = self._pre(clouds, hook, pillar_rows, buffered=capturing)
        pillars = self._infer(self.encoder, contract.ENCODER_INPUT, pre.features, capturing)[contract.ENCODER_OUTPUT]
        pillars = pillars.to(self.device)
        hook(ENCODER)
        bev = self._scatter(pillars, pre.voxels, canvas)
        hook(SCATTER)
        head_outputs = self._infer(self.head, contract.HEAD_INPUT, bev, capturing)
        hook(HEAD)
        return replace(self._post(clouds, pre, pillars, bev, head_outputs, hook), canvas=canvas)

    def _pre(self, clouds: list[Tensor], hook: StageHook, pillar_rows: int | None = None, *,
             buffered: bool = False) -> _PreRun:
        """Stages ``upload`` (the deferred non-finite count) to ``decorate`` (``pillar_rows``: as :meth:`_body`).

        ``buffered``: the clouds are a point buffer's rows, of the few sizes graphs are captured for;
        only then do the count and voxelization run compiled (compiled for fixed shapes, they would
        be compiled again for every cloud size an uncaptured run brings)."""
        count, voxelize = (self._count_nonfinite, self._voxelize) if buffered else (count_nonfinite, voxelize_padded)
        nonfinite = count(clouds)
        hook(UPLOAD)
        if self._node_voxelizer is not None:
            voxels, counts = self._node_voxelizer.padded(clouds)
        else:
            voxels, counts = voxelize(clouds, self.config.voxelization, pillar_rows)
        hook(VOXELIZE)
        features = self._decorate(voxels, self.config)
        hook(DECORATE)
        return _PreRun(nonfinite, voxels, counts, features)

    def _scatter(self, pillars: Tensor, voxels: Voxels, canvas: BevCanvas | None = None) -> Tensor:
        """``pillars [P, C]`` into the head's BEV canvas: ``canvas`` when given, else a new one (the
        coords come from voxelize, so the synchronising range check is not needed)."""
        if canvas is not None:
            return canvas.scatter(pillars, voxels.coords)
        return scatter_to_bev(pillars, voxels.coords, voxels.batch_size, self.config.bev_shape, check_coords=False,
                              channels_last=self.head.channels_last_input)

    def _post(self, clouds: list[Tensor], pre: _PreRun, pillars: Tensor, bev: Tensor,
              head_outputs: dict[str, Tensor], hook: StageHook) -> StaticRun:
        """Stages ``decode`` and ``nms``, and the packed result with the deferred checks."""
        decoded = self._decode(head_outputs)
        hook(DECODE)
        keep, converged = self._suppress(decoded, self.config, self.settings.nms_rounds)
        hook(NMS)
        packed, rows = self._pack(decoded, keep, converged, pre.nonfinite, pre.counts.table, head_outputs)
        return StaticRun(clouds, pre.voxels, pre.counts, pre.features, pillars, bev, head_outputs, decoded,
                         packed, rows, pre.voxels.points.shape[0] // len(clouds))

    def _decode_outputs(self, head_outputs: dict[str, Tensor]) -> list[DecodedBoxes]:
        """Stage ``decode``: every task's candidates from the flat head outputs."""
        return decode_tasks(self.task_maps(head_outputs), self.config)

    def _pack_result(self, decoded: list[DecodedBoxes], keep: list[Tensor], converged: Tensor, nonfinite: Tensor,
                     voxel_table: Tensor, head_outputs: dict[str, Tensor]) -> tuple[Tensor, int]:
        """Stage ``output``: the kept boxes merged and packed with the deferred checks (non-finite
        points ``[B]``, the voxel counts' ``[B, 3]`` table, non-finite head outputs), and the box rows per cloud."""
        padded = merge_tasks(decoded, keep, converged, self.config.nms.post_max_size)
        checks = torch.cat([nonfinite, voxel_table.flatten(), count_nonfinite_outputs(head_outputs, self._head_names)])
        return padded.pack(extra=checks), padded.scores.shape[1]

    def _finish(self, run: StaticRun, result: HostResult, num_points: list[int], *,
                decoded_current: bool = True) -> list[Detections] | None:
        """Boxes on the host from ``run.packed`` read there (``result``), after the deferred checks.

        Raises for non-finite points, a cloud without pillars or non-finite head outputs, warns
        for a ``max_voxels`` overflow, and redoes NMS exactly where the round budget was too small;
        ``None`` when that is needed but ``run.decoded`` no longer holds this run's boxes
        (``decoded_current`` False: a later replay rewrote them).
        """
        batch = len(num_points)
        detections, converged, values = result
        raise_nonfinite(values[:batch], num_points)
        check_voxel_counts(voxel_count_rows(values, batch), self.config.voxelization, num_points, stacklevel=4)
        raise_nonfinite_outputs(values[4 * batch:], self._head_names, self.head.name)
        if not all(converged):  # the round budget was too small for this frame: redo NMS exactly
            if not decoded_current:
                return None
            keep, done = suppress(run.decoded, self.config, None)
            detections = [d.to("cpu") for d in merge_tasks(run.decoded, keep, done, self.config.nms.post_max_size).unpad()]
        return detections


def voxel_count_rows(checks: list[int], batch: int) -> list[list[int]]:
    """The :attr:`VoxelCounts.table` rows (kept pillars, pillars, dropped points) of a batch in the
    packed result's checks (``unpack_host``'s extra values: B non-finite counts, then these)."""
    return [checks[batch + 3 * b: batch + 3 * b + 3] for b in range(batch)]


#: A stream priority above the default (lower is higher; CUDA clamps it to the device's range).
_HIGH_PRIORITY = -1


@dataclass
class _SideGraph:
    """A graph recorded by :meth:`StaticPipeline.on_head_outputs`: its own copy of the head outputs and
    the graph that copies them in (on the pipeline's stream), the stream it replays on, and events
    for the copy done (``copied``) and the copy read (``read``)."""

    inputs: dict[str, Tensor]
    copy_in: Captured
    captured: Captured
    stream: torch.cuda.Stream
    copied: torch.cuda.Event = field(default_factory=torch.cuda.Event)
    read: torch.cuda.Event = field(default_factory=torch.cuda.Event)


class LaunchedRun:
    """One batch queued on a :class:`StaticPipeline`: its head outputs now, its boxes once read.

    A captured run's tensors live in its graph's memory, which the graph's next replay rewrites:
    read :attr:`head_outputs` (or queue work on them) before the pipeline's next :meth:`~StaticPipeline.launch`.
    The packed result's copy to the host is queued at once, so :meth:`detections` stays right after
    later replays; what needs the device tensors after that (NMS redone exactly, the head outputs
    asked for again) runs the batch again, uncaptured. So does a batch with a cloud of more
    pillars than the graph's pillar rows (:attr:`pillars_fit` False): its head outputs and boxes
    from the graph are incomplete, and the pipeline's next graph of that size gets room for them.

    Attributes:
        head_outputs: the head's flat ``{output name: Tensor[B, ch, h, w]}`` of this batch (valid
            only where :attr:`pillars_fit`; :meth:`head_outputs_again` always is).
        graph: the key of the graph that ran it (``None``: it ran uncaptured).
    """

    def __init__(self, pipeline: StaticPipeline, clouds: list[Tensor], head_outputs: dict[str, Tensor], *,
                 finished: list[Detections] | None = None, run: StaticRun | None = None,
                 graph: GraphKey | None = None) -> None:
        self.pipeline, self.clouds, self.head_outputs = pipeline, clouds, head_outputs
        self._detections, self._run, self.graph = finished, run, graph
        self._replay = pipeline._replays.get(graph, 0) if graph is not None else 0
        self._host: Tensor | None = None
        self._event: torch.cuda.Event | None = None
        self._result: HostResult | None = None  # the packed result read, once
        self._fits: bool | None = None if run is not None else True
        self._again: StageOutputs | None = None  # the batch run again, uncaptured
        if run is not None:
            (self._host,), self._event = copy_to_host(run.packed)

    @property
    def current(self) -> bool:
        """The graph's memory still holds this batch (no later replay of the same graph)."""
        return self.graph is None or self.pipeline._replays.get(self.graph) == self._replay

    def wait(self) -> None:
        """Block until the packed result is on the host (nothing to wait for when the batch ran uncaptured)."""
        if self._event is not None:
            self._event.synchronize()

    def _host_result(self) -> HostResult:
        """The packed result read on the host (waits for its copy; read once)."""
        if self._result is None:
            assert self._run is not None and self._host is not None
            self.wait()
            self._result = unpack_host(self._host, len(self.clouds), self._run.rows)
        return self._result

    @property
    def pillars_fit(self) -> bool:
        """Every cloud's kept pillars were in the graph's pillar rows (waits for the result's copy)."""
        if self._fits is None:
            assert self._run is not None and self.graph is not None
            kept = max(row[0] for row in voxel_count_rows(self._host_result().extra, len(self.clouds)))
            self._fits = kept <= self._run.pillar_rows
            if not self._fits:
                self.pipeline._grow_pillar_rows(self.graph, kept)
        return self._fits

    def _run_again(self) -> StageOutputs:
        if self._again is None:
            self._again = self.pipeline.run_stages(self.clouds)
        return self._again

    def detections(self) -> list[Detections]:
        """One :class:`Detections` per cloud on the CPU (waits for the copy; checks as :meth:`StaticPipeline.run_stages`)."""
        if self._detections is None:
            assert self._run is not None
            found = self.pipeline._finish(self._run, self._host_result(), [int(c.shape[0]) for c in self.clouds],
                                          decoded_current=self.current) if self.pillars_fit else None
            self._detections = found if found is not None else self._run_again().detections
        return self._detections

    def head_outputs_again(self) -> dict[str, Tensor]:
        """This batch's head outputs: :attr:`head_outputs` while current and complete, else from the batch run again."""
        return self.head_outputs if self.current and self.pillars_fit else self._run_again().head_outputs
