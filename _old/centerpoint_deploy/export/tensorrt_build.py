"""Build TensorRT engines from the exported ONNX files (TensorRT 10 and 11 Python APIs).

``tensorrt`` is imported only inside the functions that need it. The pure helpers
(:func:`derive_profiles`, :func:`precision_flags`, :func:`profile_problems`, :func:`build_mode`)
need no TensorRT and decide everything a build depends on, so they are tested anywhere.

Precision (:func:`build_mode`, chosen from the installed TensorRT's version and the precision
the ONNX was exported in, and logged):

- TensorRT >= 11 removed the weakly typed precision flags: the network is always created
  ``STRONGLY_TYPED`` and every layer runs in the precision the ONNX gives it (fp16 casts,
  INT8 Q/DQ); asking for builder flags other than the graph's own precision is an error;
- TensorRT 10: fp32 graphs are built weakly typed with the flags of the requested precision
  (``fp32``/``tf32``/``fp16``), fp16 graphs with ``FP16``; INT8 Q/DQ graphs strongly typed.

Optimization profiles (shapes are ``[min, opt, max]`` per input):

- encoder ``input_features [V, P, F]``: by default ``V`` from ``min_voxels`` (1000, as AWML)
  through a quarter of ``max_voxels`` (AWML: 20000 of 96000) to ``max_voxels``; with
  ``static_encoder=True`` Autoware's profile ``min = opt = max = [max_voxels, P, F]``;
- head ``spatial_features [B, C, H, W]``: ``H, W`` fixed by the config, ``B`` from 1 to
  ``max_batch`` (Autoware: 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Literal

from centerpoint_deploy import contract
from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.backends.tensorrt import import_tensorrt
from centerpoint_deploy.errors import ExportError
from centerpoint_deploy.graph_io import GraphPart
from centerpoint_deploy.export.manifest import ENGINE_FILES, EngineRecord, Manifest, load_manifest, sha256_file, write_manifest

Shape = tuple[int, ...]
#: Input name -> ``(min, opt, max)`` shapes of one optimization profile.
ProfileShapes = dict[str, tuple[Shape, Shape, Shape]]
Precision = Literal["fp32", "tf32", "fp16"]

#: Builder flags a precision switches on; the others of :data:`PRECISION_FLAG_NAMES` are cleared.
_PRECISION_FLAGS: dict[str, frozenset[str]] = {
    "fp32": frozenset(),  # strict fp32: TF32 (on by default in TensorRT) is cleared
    "tf32": frozenset({"TF32"}),
    "fp16": frozenset({"FP16", "TF32"}),  # layers left in fp32 may use TF32, as TensorRT's default
}
PRECISION_FLAG_NAMES = frozenset({"FP16", "TF32"})


def precision_flags(precision: str) -> frozenset[str]:
    """Names of the ``trt.BuilderFlag`` members to set for ``precision``.

    ``"fp32"`` sets none (and the builder clears TF32), ``"tf32"`` sets ``TF32``, ``"fp16"``
    sets ``FP16`` and ``TF32``.
    """
    if precision not in _PRECISION_FLAGS:
        raise ExportError(f"precision '{precision}' is not one of {sorted(_PRECISION_FLAGS)}")
    return _PRECISION_FLAGS[precision]


@dataclass(frozen=True)
class BuildMode:
    """How one engine is built.

    Attributes:
        strongly_typed: create the network with ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``.
        flags: ``trt.BuilderFlag`` names to set (weakly typed builds only).
        precision: what the engine computes in: ``fp32``, ``tf32``, ``fp16`` or ``int8``.
        reason: the choice in one sentence (logged and kept with the build).
    """

    strongly_typed: bool
    flags: frozenset[str]
    precision: str
    reason: str


def tensorrt_major(version: str) -> int:
    """Major version of a ``tensorrt.__version__`` string (``"10.13.0.35"`` -> 10)."""
    try:
        return int(version.split(".")[0])
    except ValueError as exc:
        raise ExportError(f"cannot read the TensorRT version '{version}'") from exc


def build_mode(tensorrt_version: str, onnx_precision: str, requested: str | None = None) -> BuildMode:
    """The build mode for a graph exported in ``onnx_precision`` on TensorRT ``tensorrt_version``.

    Args:
        onnx_precision: ``"fp32"``, ``"fp16"`` or ``"int8"`` (the manifest's ``precision``).
        requested: builder-flag precision asked for (``fp32``/``tf32``/``fp16``); ``None`` = the graph's.

    Raises:
        ExportError: TensorRT older than 10, an unknown precision, or flags TensorRT 11 no longer has.
    """
    major = tensorrt_major(tensorrt_version)
    if major < 10:
        raise ExportError(f"TensorRT {tensorrt_version} is too old: this tool needs TensorRT 10 or newer")
    if onnx_precision not in ("fp32", "fp16", "int8"):
        raise ExportError(f"ONNX precision '{onnx_precision}' is not one of fp32, fp16, int8")
    if requested is not None:
        precision_flags(requested)
    if major >= 11:
        if requested not in (None, onnx_precision):
            raise ExportError(f"TensorRT {tensorrt_version} builds strongly typed and has no {requested.upper()} flag: "
                              f"export the ONNX with --precision {requested} instead")
        return BuildMode(True, frozenset(), onnx_precision,
                         f"TensorRT {tensorrt_version} (>= 11): strongly typed, precision from the {onnx_precision} ONNX")
    if onnx_precision == "int8":
        return BuildMode(True, frozenset(), "int8",
                         f"TensorRT {tensorrt_version}: INT8 Q/DQ graph built strongly typed")
    chosen = requested or onnx_precision
    if onnx_precision == "fp16" and chosen != "fp16":
        raise ExportError(f"the ONNX is fp16; a {chosen} engine needs an fp32 export")
    return BuildMode(False, precision_flags(chosen), chosen,
                     f"TensorRT {tensorrt_version} (10): weakly typed, builder flags for {chosen} "
                     f"({', '.join(sorted(precision_flags(chosen))) or 'none'}) on the {onnx_precision} ONNX")


def derive_profiles(config: ModelConfig, *, min_voxels: int = 1000, opt_voxels: int | None = None,
                    static_encoder: bool = False, max_batch: int = 1) -> dict[GraphPart, ProfileShapes]:
    """Optimization profiles of both graphs for ``config`` (see module doc).

    Args:
        min_voxels: smallest voxel count the encoder engine accepts (clamped to ``max_voxels``).
        opt_voxels: the voxel count TensorRT tunes for; default a quarter of ``max_voxels``.
        static_encoder: Autoware's fixed ``[max_voxels, P, F]`` profile.
        max_batch: largest head batch (the head's H and W are fixed by the config).
    """
    max_voxels = config.voxelization.max_voxels
    if min_voxels < 1:
        raise ExportError(f"min_voxels = {min_voxels} must be >= 1")
    if max_batch < 1:
        raise ExportError(f"max_batch = {max_batch} must be >= 1")
    low = min(min_voxels, max_voxels)
    opt = opt_voxels if opt_voxels is not None else max(low, max_voxels // 4)
    if not low <= opt <= max_voxels:
        raise ExportError(f"opt_voxels = {opt_voxels} must lie in [{low}, max_voxels={max_voxels}]")
    points, features = config.voxelization.max_num_points, config.num_features
    if static_encoder:
        low = opt = max_voxels
    height, width = config.bev_shape
    bev = (config.voxel_encoder.out_channels, height, width)
    return {
        "encoder": {contract.ENCODER_INPUT: ((low, points, features), (opt, points, features),
                                             (max_voxels, points, features))},
        "head": {contract.HEAD_INPUT: ((1, *bev), (1, *bev), (max_batch, *bev))},
    }


def profile_problems(profile: ProfileShapes, network_inputs: dict[str, tuple[int | None, ...]]) -> list[str]:
    """Ways ``profile`` does not fit the network's inputs (``None`` = dynamic dim); empty if it fits.

    Every input needs a profile; ranks must match; fixed dims must equal the profile's; and
    ``min <= opt <= max`` with ``min >= 1`` on every axis.
    """
    problems = []
    if set(profile) != set(network_inputs):
        problems.append(f"profile covers {sorted(profile)}, the network's inputs are {sorted(network_inputs)}")
    for name in sorted(set(profile) & set(network_inputs)):
        dims, shapes = network_inputs[name], profile[name]
        if any(len(s) != len(dims) for s in shapes):
            problems.append(f"'{name}': profile shapes {[list(s) for s in shapes]} do not have rank {len(dims)}")
            continue
        for axis, dim in enumerate(dims):
            low, opt, high = (s[axis] for s in shapes)
            if dim is not None and not low == opt == high == dim:
                problems.append(f"'{name}' axis {axis} is fixed at {dim}, profile gives {low}/{opt}/{high}")
            elif not 1 <= low <= opt <= high:
                problems.append(f"'{name}' axis {axis}: need 1 <= min <= opt <= max, got {low}/{opt}/{high}")
    return problems


@dataclass(frozen=True)
class BuildResult:
    """One built engine: its path, the TensorRT version, the build mode and the builder's log lines."""

    engine_path: Path
    tensorrt_version: str
    log: tuple[str, ...]
    mode: BuildMode


def build_engine(onnx_path: Path | str, engine_path: Path | str, *, profile: ProfileShapes,
                 precision: Precision | None = None, onnx_precision: str = "fp32", workspace_bytes: int = 1 << 30,
                 timing_cache: Path | str | None = None, log_path: Path | str | None = None) -> BuildResult:
    """Parse ``onnx_path`` and serialize a TensorRT engine to ``engine_path``.

    Args:
        profile: input name -> ``(min, opt, max)`` shapes (:func:`derive_profiles`).
        precision: TensorRT 10 builder flags for an fp32 graph: ``"fp32"`` (TF32 off), ``"tf32"``
            or ``"fp16"`` (:func:`precision_flags`); ``None`` = the graph's own precision.
        onnx_precision: the precision the ONNX was exported in (the manifest's); with the
            TensorRT version it decides the :class:`BuildMode` (:func:`build_mode`).
        workspace_bytes: builder workspace memory-pool limit (Autoware: 1 GiB).
        timing_cache: file to read tactic timings from (if it exists) and write back to.
        log_path: write the builder's log there (warnings and up).

    Raises:
        BackendUnavailableError: TensorRT is not installed.
        ExportError: bad arguments, a parser error, a profile that does not fit, or a failed build.
    """
    if precision is not None:
        precision_flags(precision)
    if workspace_bytes < 1 << 20:
        raise ExportError(f"workspace_bytes = {workspace_bytes} is below 1 MiB")
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise ExportError(f"ONNX file {onnx_path} does not exist")
    trt = import_tensorrt()
    mode = build_mode(trt.__version__, onnx_precision, precision)
    logger = _collecting_logger(trt)
    logger.lines.append(f"[INFO] {mode.reason}")
    try:
        builder = trt.Builder(logger)
        network = builder.create_network(network_flags(trt, mode))
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ExportError(f"TensorRT cannot parse {onnx_path}: {errors}")
        inputs = {}
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            inputs[tensor.name] = tuple(None if d < 0 else d for d in tensor.shape)
        problems = profile_problems(profile, inputs)
        if problems:
            raise ExportError(f"the optimization profile does not fit {onnx_path.name}: " + "; ".join(problems))

        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
        for name in sorted(PRECISION_FLAG_NAMES) if not mode.strongly_typed else ():
            flag = getattr(trt.BuilderFlag, name)
            if name in mode.flags:
                config.set_flag(flag)
            else:
                config.clear_flag(flag)
        shapes = builder.create_optimization_profile()
        for name, (low, opt, high) in profile.items():
            shapes.set_shape(name, low, opt, high)
        config.add_optimization_profile(shapes)
        cache_path = Path(timing_cache) if timing_cache is not None else None
        cache_bytes = cache_path.read_bytes() if cache_path is not None and cache_path.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(cache_bytes), False)

        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            errors = [line for line in logger.lines if line.startswith(("[ERROR]", "[INTERNAL_ERROR]"))]
            raise ExportError(f"TensorRT failed to build {onnx_path.name} ({mode.precision}): "
                              + ("; ".join(errors[-3:]) or "see the build log"))
        engine_path.parent.mkdir(parents=True, exist_ok=True)
        engine_path.write_bytes(bytes(serialized))
        if cache_path is not None:
            cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    finally:
        if log_path is not None:
            Path(log_path).write_text("\n".join(logger.lines) + "\n")
    return BuildResult(engine_path, trt.__version__, tuple(logger.lines), mode)


def network_flags(trt: ModuleType, mode: BuildMode) -> int:
    """``create_network`` flags: ``STRONGLY_TYPED`` for strongly typed builds, else 0 (explicit batch is implied)."""
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if mode.strongly_typed else 0


def _collecting_logger(trt: ModuleType):  # -> trt.ILogger, defined only once tensorrt is imported
    """A ``trt.ILogger`` that keeps warnings and errors as ``[SEVERITY] message`` lines."""

    class CollectingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.lines: list[str] = []

        def log(self, severity, msg: str) -> None:  # noqa: ANN001 (trt.ILogger.Severity)
            if int(severity) <= int(trt.ILogger.Severity.WARNING):
                self.lines.append(f"[{severity.name}] {msg}")

    return CollectingLogger()


def build_deploy_engines(deploy_dir: Path | str, *, precision: Precision | None = None,
                         workspace_bytes: int = 1 << 30, profiles: dict[GraphPart, ProfileShapes] | None = None,
                         timing_cache: Path | str | None = None) -> Manifest:
    """Build the engines of both graphs of a deploy directory and list them in its manifest.

    Args:
        deploy_dir: a directory written by :func:`~centerpoint_deploy.export.onnx_export.export_onnx`.
        profiles: per graph part; default :func:`derive_profiles` of the manifest's config.
        timing_cache: shared tactic timing cache file (read if present, then updated).

    Returns:
        The updated manifest (also written to ``deploy_metadata.yaml``). The build log of each engine
        is written beside it as ``<engine>.log``.
    """
    manifest = load_manifest(deploy_dir)
    profiles = profiles if profiles is not None else derive_profiles(manifest.model_config())
    for part in ("encoder", "head"):
        engine_path = manifest.deploy_dir / ENGINE_FILES[part]
        result = build_engine(manifest.onnx_path(part), engine_path, profile=profiles[part],
                              precision=precision, onnx_precision=manifest.precision, workspace_bytes=workspace_bytes,
                              timing_cache=timing_cache, log_path=engine_path.with_suffix(".log"))
        record = EngineRecord(
            file=engine_path.name,
            sha256=sha256_file(engine_path),
            precision=result.mode.precision,
            profile={name: [list(s) for s in shapes] for name, shapes in profiles[part].items()},
            tensorrt_version=result.tensorrt_version,
        )
        manifest = manifest.with_engine(part, record)
    write_manifest(manifest)
    return manifest
