"""Measure detectors: per-stage latency, end-to-end latency, peak memory, scaling.

On a GPU, two separate runs per detector, so that stage timing never distorts the end-to-end figure:

1. staged: ``run_stages`` with a hook that marks the end of each stage (plus reading the
   point file when one is given; CUDA events on a GPU: no synchronisation between stages),
   one synchronisation per frame; for a whole-pipeline graph (``pipeline_graph``), each stage
   captured and replayed alone (:mod:`~centerpoint_deploy.benchmark.captured`);
2. end to end: ``detector(points)`` from host points to boxes on the host, wall-clock time
   with nothing inserted, after a synchronisation (a caller's view, including launch
   overhead and the final copy).

On the CPU the staged run is the end-to-end run: nothing runs asynchronously, a mark is one
``perf_counter`` read (microseconds against stages of milliseconds), and ``detector(points)``
is ``run_stages(points)``'s boxes, so each staged iteration's first-to-last-mark time is its
end-to-end time (a second run would double the benchmark's minutes on a small CPU for the same
figure). With a point file the staged run also reads it, so the CPU keeps the two runs there.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

from centerpoint_deploy.benchmark.captured import time_captured_stages
from centerpoint_deploy.benchmark.inputs import random_cloud
from centerpoint_deploy.benchmark.render import write_report
from centerpoint_deploy.benchmark.results import BenchmarkReport, ScalingPoint, VariantResult, machine_info
from centerpoint_deploy.benchmark.timing import (
    LatencyStats,
    WallClock,
    stage_clock,
    stage_totals,
    summarize_stages,
    time_calls,
    time_stages,
)
from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.clouds import file_cloud
from centerpoint_deploy.stages import Pipeline, StageHook
from centerpoint_deploy.errors import BackendError, BackendUnavailableError, BenchmarkError
from centerpoint_deploy.model.centerpoint import input_multiple
from centerpoint_deploy.progress import Progress, track
from centerpoint_deploy.structures import Detections
from centerpoint_deploy.variant import TORCH_FLAGS, VariantSpec, build_detector


def describe(spec: VariantSpec) -> tuple[str, str, dict[str, Any]]:
    """``(backend kind, precision, options)`` of a variant for the report (every PyTorch switch listed)."""
    options: dict[str, Any] = {"static_shapes": spec.static, "pipeline_graph": spec.pipeline_graph}
    if spec.backend == "pytorch":
        options = {**{flag: flag in spec.flags for flag in TORCH_FLAGS}, **options}
    return spec.backend, spec.precision, options


def _host(detections: Detections | list[Detections]) -> list[Detections]:
    return [d.to("cpu") for d in (detections if isinstance(detections, list) else [detections])]


def benchmark_detector(name: str, spec: VariantSpec, detector: Pipeline, points: Tensor, *, warmup: int,
                       iterations: int, point_file: Path | None = None, load_dim: int | None = None) -> VariantResult:
    """Time one detector on one cloud.

    Args:
        name: label of the variant.
        spec: the variant ``detector`` was built from (for the report).
        detector: loaded or not (it is loaded here).
        points: ``Tensor[N, D]`` float32 on the host, the model's columns.
        warmup, iterations: untimed and timed runs of each of the two measurements (the first
            call, timed on its own as ``first_call_s``, counts as one warm-up run of the staged one).
        point_file: when given, the staged run starts with a ``read`` stage that loads this
            file (``load_dim`` floats per point) instead of using ``points``.

    Returns:
        The :class:`VariantResult` (stage and end-to-end statistics, peak GPU memory, the
        load + first call, which compiles or captures).
    """
    begin = time.perf_counter()
    detector.load()
    _host(detector(points))
    first_call = time.perf_counter() - begin
    device = detector.device

    def read(hook: StageHook) -> Tensor:
        cloud = file_cloud(point_file, detector.config, load_dim=load_dim) if point_file is not None else points
        if point_file is not None:
            hook("read")
        return cloud

    # each stage as a graph of its own needs the backends inside it (PyTorch's)
    captured = spec.pipeline_graph and int(points.shape[0]) <= detector.settings.max_points \
        and detector.captures_backends
    if captured:  # each stage inside a graph of its own: kernel time, no launch overhead
        stage_samples = {}
        if point_file is not None:  # reading the point file: host work
            stage_samples = time_stages(read, stage_clock("cpu"), warmup=warmup, iterations=iterations)
        stage_samples |= time_captured_stages(detector, points, warmup=warmup, iterations=iterations)
    else:
        # the first call above was one warm-up run of these stages
        stage_samples = time_stages(lambda hook: detector.run_stages(read(hook), hook), stage_clock(device),
                                    warmup=max(warmup - 1, 0), iterations=iterations)

    def end_to_end() -> list[Detections]:
        return _host(detector(points))

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    if device.type == "cpu" and point_file is None:  # the staged run was the end-to-end run (module doc)
        e2e = stage_totals(stage_samples)
    else:
        e2e = time_calls(end_to_end, WallClock(device), warmup=warmup, iterations=iterations)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None

    outputs = detector.run_stages(points)
    backend, precision, options = describe(spec)
    return VariantResult(name=name, backend=backend, precision=precision, options=options, device=device.type,
                         stages=summarize_stages(stage_samples), end_to_end=LatencyStats.from_seconds(e2e),
                         peak_memory_mb=peak, num_points=int(points.shape[0]), num_voxels=outputs.num_voxels,
                         num_boxes=len(outputs.detections[0]), first_call_s=first_call)


def benchmark_backends(detectors: Mapping[str, Pipeline], specs: Mapping[str, VariantSpec], points: Tensor,
                       out_dir: Path | str | None, *, warmup: int, iterations: int, config_name: str,
                       frame: dict[str, Any] | None = None, plots: bool = True,
                       progress: Progress | None = None) -> BenchmarkReport:
    """Benchmark each detector on ``points`` and write the report into ``out_dir``.

    Args:
        detectors: variant name -> detector (the name is the row label; for the main job it is
            the backend kind).
        specs: variant name -> the spec its detector was built from.
        points: ``Tensor[N, D]`` float32 on the host.
        out_dir: where ``benchmark.json``, ``benchmark.md`` and ``stages.png`` go (None: nothing written).
        frame: description of the input for the report (default: its point count).
        progress: called ``progress("benchmark", done, len(detectors))`` as detectors finish.

    Returns:
        The :class:`BenchmarkReport`.
    """
    if not detectors:
        raise BenchmarkError("benchmark_backends needs at least one detector")
    device = next(iter(detectors.values())).device
    report = BenchmarkReport(config=config_name, frame={"num_points": int(points.shape[0]), **(frame or {})},
                             settings={"warmup": warmup, "iterations": iterations}, machine=machine_info(device))
    for name, detector in track(detectors.items(), "benchmark", progress):
        report.results.append(benchmark_detector(name, specs[name], detector, points, warmup=warmup,
                                                 iterations=iterations))
    if out_dir is not None:
        write_report(report, out_dir, plots=plots)
    return report


def scaling_config(config: ModelConfig, grid_side: int) -> ModelConfig:
    """``config`` with a square grid of ``grid_side`` cells per side (same voxel size, range centred on 0).

    Raises:
        BenchmarkError: ``grid_side`` is not a multiple of the network's input multiple.
    """
    multiple = input_multiple(config)
    if grid_side < multiple or grid_side % multiple:
        raise BenchmarkError(f"grid side {grid_side} is invalid for {config.name}: need a positive multiple of {multiple}")
    vx, vy, _ = config.voxelization.voxel_size
    r = config.voxelization.point_cloud_range
    half_x, half_y = grid_side * vx / 2, grid_side * vy / 2
    voxelization = dataclasses.replace(config.voxelization,
                                       point_cloud_range=(-half_x, -half_y, r[2], half_x, half_y, r[5]))
    return dataclasses.replace(config, voxelization=voxelization)


def scale(name: str, detector: Pipeline, axis: str, values: Sequence[int], *, warmup: int, iterations: int,
          points_per_frame: int = 100_000, clouds: Mapping[int, Tensor] | None = None,
          seed: int = 0) -> list[ScalingPoint]:
    """End-to-end latency of ``detector`` along one axis.

    Args:
        axis: ``"points"``: each value is a number of points (random, uniform over the range,
            or ``clouds[value]`` when given, e.g. merged sweeps); ``"grid"``: each value is a
            grid side, run with ``points_per_frame`` random points over that grid's range (the
            same backends, a detector on :func:`scaling_config`).
    """
    if axis not in ("points", "grid"):
        raise BenchmarkError(f"scaling axis '{axis}' is not one of 'points', 'grid'")
    results = []
    for value in values:
        with warnings.catch_warnings():  # large random clouds overflow max_voxels on purpose
            warnings.simplefilter("ignore", UserWarning)
            results.append(_scale_one(name, detector, axis, value, warmup, iterations, points_per_frame, clouds, seed))
    return results


def _scale_one(name: str, detector: Pipeline, axis: str, value: int, warmup: int, iterations: int,
               points_per_frame: int, clouds: Mapping[int, Tensor] | None, seed: int) -> ScalingPoint:
    if axis == "points":
        run = detector
        cloud = clouds[value] if clouds and value in clouds else torch.from_numpy(
            random_cloud(value, detector.config, seed))
    else:
        run = detector.with_config(scaling_config(detector.config, value))
        cloud = torch.from_numpy(random_cloud(points_per_frame, run.config, seed))
    samples = time_calls(lambda: _host(run(cloud)), WallClock(detector.device), warmup=warmup, iterations=iterations)
    return ScalingPoint(name, axis, int(value), LatencyStats.from_seconds(samples), run.run_stages(cloud).num_voxels)


@dataclasses.dataclass(frozen=True)
class ScalingPlan:
    """What the scaling runs cover.

    Attributes:
        points: points per frame (random, uniform over the range).
        sweeps: numbers of merged synthetic sweeps (a realistic multi-sweep cloud each).
        grid: BEV cells per side (``points_per_frame`` random points over each grid's range).
        variants: names of the variants to scale (default: the first and the fastest measured).
        iterations, warmup: per size.
    """

    points: tuple[int, ...] = (10_000, 30_000, 100_000, 300_000, 1_000_000)
    sweeps: tuple[int, ...] = (1, 3, 10)
    grid: tuple[int, ...] = (256, 512, 760, 1024)
    variants: tuple[str, ...] = ()
    points_per_frame: int = 100_000
    iterations: int = 20
    warmup: int = 3


def benchmark_variants(config: ModelConfig, variants: Sequence[str], points: Tensor, *, device: torch.device,
                       warmup: int, iterations: int, checkpoint: Path | None = None, deploy_dir: Path | None = None,
                       frame: dict[str, Any] | None = None, point_file: Path | None = None,
                       scaling: ScalingPlan | None = None, out_dir: Path | None = None, plots: bool = True,
                       log: Callable[[str], None] = lambda _: None,
                       skipped: Mapping[str, str] | None = None,
                       progress: Progress | None = None) -> BenchmarkReport:
    """Benchmark named variants (:mod:`~centerpoint_deploy.variant`) on one cloud, then scale.

    A variant whose runtime, device or artifacts are missing here is listed in
    ``report.skipped`` with the reason; bad variant strings raise :class:`BenchmarkError`.

    Args:
        points: ``Tensor[N, D]`` float32 on the host (the model's columns).
        point_file: the same cloud as a file, for the ``read`` stage (optional).
        scaling: scaling runs to add (None: none).
        out_dir: where the report files go (None: not written).
        log: progress messages.
        progress: called ``progress("benchmark variants", done, len(variants))`` as variants finish.
        skipped: variants the caller left out, with the reason (listed in ``report.skipped``).
    """
    try:
        specs = [VariantSpec.parse(v, device=device) for v in variants]  # all parse errors before any run
    except BackendError as exc:
        raise BenchmarkError(str(exc)) from None
    report = BenchmarkReport(config=config.name, frame={"num_points": int(points.shape[0]), **(frame or {})},
                             settings={"warmup": warmup, "iterations": iterations}, machine=machine_info(device))
    for name, reason in (skipped or {}).items():
        report.skipped[name] = reason
        log(f"{name}: skipped ({reason})")
    detectors: dict[str, Pipeline] = {}
    for spec in track(specs, "benchmark variants", progress):
        try:
            detector = build_detector(spec, config, checkpoint=checkpoint if spec.runs_checkpoint else None,
                                      deploy_dir=None if spec.runs_checkpoint else deploy_dir, reproducible=False)
            log(f"{spec.name}: measuring")
            report.results.append(benchmark_detector(spec.name, spec, detector, points, warmup=warmup,
                                                     iterations=iterations, point_file=point_file))
            detectors[spec.name] = detector
        except (BackendUnavailableError, BackendError, BenchmarkError) as exc:
            report.skipped[spec.name] = str(exc)
            log(f"{spec.name}: skipped ({exc})")
        if out_dir is not None:
            write_report(report, out_dir, plots=False)  # keep partial results if a later variant dies
    if scaling is not None and detectors:
        report.scaling = _run_scaling(config, detectors, report, scaling, log)
    if out_dir is not None:
        write_report(report, out_dir, plots=plots)
    for detector in detectors.values():
        detector.close()
    return report


def _run_scaling(config: ModelConfig, detectors: dict[str, Pipeline], report: BenchmarkReport, plan: ScalingPlan,
                 log: Callable[[str], None]) -> list[ScalingPoint]:
    from centerpoint_deploy.benchmark.inputs import lidar_frame, model_columns

    if plan.variants:
        missing = [v for v in plan.variants if v not in detectors]
        if missing:
            raise BenchmarkError(f"scaling variants {missing} were not measured; measured: {sorted(detectors)}")
        names = list(plan.variants)
    else:
        fastest = min(report.results, key=lambda r: r.end_to_end.p50).name
        names = list(dict.fromkeys([report.results[0].name, fastest]))
    sweeps = {}
    for count in plan.sweeps:
        cloud = torch.from_numpy(model_columns(lidar_frame(seed=0, sweeps=count), config))
        sweeps[int(cloud.shape[0])] = cloud
    points: list[ScalingPoint] = []
    for name in names:
        log(f"{name}: scaling")
        common = {"warmup": plan.warmup, "iterations": plan.iterations}
        points += scale(name, detectors[name], "points", plan.points, **common)
        points += [dataclasses.replace(p, axis="sweeps") for p in
                   scale(name, detectors[name], "points", list(sweeps), clouds=sweeps, **common)]
        points += scale(name, detectors[name], "grid", plan.grid, points_per_frame=plan.points_per_frame, **common)
    return points
