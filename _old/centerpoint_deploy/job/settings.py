"""Settings of the main job (``centerpoint-deploy deploy``): typed, validated, from YAML and flags.

Precedence: built-in defaults < the deploy config YAML (``--deploy-config FILE``) < command-line
flags. The YAML has the layout :meth:`DeploySettings.to_dict` writes::

    config: demo                 # preset name, project .yaml or AWML .py config
    checkpoint: null             # null: the bundled demo checkpoint (demo config only)
    dataset: null                # null: the generated sample validation set
    out: null                    # null: outputs/deploy-<timestamp>
    device: auto                 # auto (cuda when available), cpu, cuda, cuda:N
    export:    {opset: 17, rot_y_axis_reference: false, simplify: false, atol: 1.0e-4, autoware_format: v4.1,
                tensorrt: null, tensorrt_precision: fp16, workspace_gb: 1.0}
    verify:    {enabled: true, frames: 3, atol: null, rtol: null, bisect: true}
    evaluate:  {enabled: true, metric: t4, class_range: null, max_frames: 20, bev_frames: 3}
    calibrate: {enabled: true, floor: 0.1, holdout_fraction: 0.5, target_precision: null, min_gt: 10,
                min_predictions: 10}
    benchmark: {enabled: true, iterations: 5, warmup: 1}

Any key may be left out (its default applies). Relative paths are relative to the working
directory. Every bad value raises :class:`ConfigError` naming the field, e.g.
``deploy config field 'verify.frames' = 0 is invalid: an integer >= 1``.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from centerpoint_deploy.errors import ConfigError

#: Bundle layouts (``export.bundle.AUTOWARE_FORMATS``, written here so that --help imports no torch).
AUTOWARE_FORMATS = ("v4.1", "legacy")
#: TensorRT builder precisions (see ``export.tensorrt_build``).
TENSORRT_PRECISIONS = ("fp32", "tf32", "fp16")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def _fail(name: str, value: Any, allowed: str) -> typing.NoReturn:
    raise ConfigError(f"deploy config field '{name}' = {value!r} is invalid: {allowed}")


@dataclass(frozen=True)
class ExportSettings:
    """ONNX export and TensorRT engine build.

    Attributes:
        opset: ONNX opset, 13-17.
        rot_y_axis_reference: export the head in Autoware's dim/rot convention (AWML's switch).
        simplify: run onnxsim on both graphs.
        atol: largest allowed max |ONNX Runtime - PyTorch| in the export's own check.
        autoware_format: the bundle layout, ``v4.1`` (Autoware's current node) or ``legacy``
            (``<model>_ml_package.param.yaml`` for nodes before bundle v4.1).
        tensorrt: build engines; ``None`` = when ``import tensorrt`` works and the device is CUDA.
        tensorrt_precision: ``fp32`` (strict), ``tf32`` or ``fp16`` (Autoware's default).
        workspace_gb: TensorRT builder workspace, GiB.
    """

    opset: int = 17
    rot_y_axis_reference: bool = False
    simplify: bool = False
    atol: float = 1e-4
    autoware_format: str = "v4.1"
    tensorrt: bool | None = None
    tensorrt_precision: str = "fp16"
    workspace_gb: float = 1.0

    def __post_init__(self) -> None:
        if not 13 <= self.opset <= 17:
            _fail("export.opset", self.opset, "an integer in 13..17")
        if not self.atol > 0:
            _fail("export.atol", self.atol, "a number > 0")
        if self.autoware_format not in AUTOWARE_FORMATS:
            _fail("export.autoware_format", self.autoware_format, f"one of {', '.join(AUTOWARE_FORMATS)}")
        if self.tensorrt_precision not in TENSORRT_PRECISIONS:
            _fail("export.tensorrt_precision", self.tensorrt_precision, f"one of {', '.join(TENSORRT_PRECISIONS)}")
        if not self.workspace_gb > 0:
            _fail("export.workspace_gb", self.workspace_gb, "a number of GiB > 0")


@dataclass(frozen=True)
class VerifySettings:
    """PyTorch against the exported backends, stage by stage.

    Attributes:
        enabled: run the verification step.
        frames: frames verified (spread evenly over the evaluated frames).
        atol, rtol: tensor tolerances; ``None`` = the strict default of the backend's precision
            (fp32: atol 1e-4, rtol 1e-3; fp16/tf32 TensorRT engines: 1e-2, 1e-2).
        bisect: on a failure, find the first diverging layer of the ONNX graph.
    """

    enabled: bool = True
    frames: int = 3
    atol: float | None = None
    rtol: float | None = None
    bisect: bool = True

    def __post_init__(self) -> None:
        if self.frames < 1:
            _fail("verify.frames", self.frames, "an integer >= 1")
        for name in ("atol", "rtol"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                _fail(f"verify.{name}", value, "null (precision default) or a number >= 0")


@dataclass(frozen=True)
class EvaluateSettings:
    """nuScenes-style evaluation of every backend.

    Attributes:
        enabled: run the evaluation step.
        metric: ``t4`` (AWML: 121 m for every class, distance buckets), ``nuscenes`` (devkit
            cvpr_2019) or a metric-config ``.json`` file.
        class_range: metres, applied to every class; ``None`` = the metric's ranges, each
            lowered to the model's reach when it lies beyond the grid (see ``job.run``).
        max_frames: frames evaluated, spread evenly over the dataset; ``None`` = all.
        bev_frames: evaluated frames drawn as bird's-eye views (GT + every backend).
    """

    enabled: bool = True
    metric: str = "t4"
    class_range: float | None = None
    max_frames: int | None = 20
    bev_frames: int = 3

    def __post_init__(self) -> None:
        from centerpoint_deploy.evaluate.io import METRIC_PRESETS  # numpy and torch: not at import (fast --help)

        if self.metric not in METRIC_PRESETS and not self.metric.endswith(".json"):
            _fail("evaluate.metric", self.metric, f"one of {', '.join(METRIC_PRESETS)} or a .json metric config")
        if self.class_range is not None and not self.class_range > 0:
            _fail("evaluate.class_range", self.class_range, "null (from the model's range) or metres > 0")
        if self.max_frames is not None and self.max_frames < 1:
            _fail("evaluate.max_frames", self.max_frames, "null (all frames) or an integer >= 1")
        if self.bev_frames < 0:
            _fail("evaluate.bev_frames", self.bev_frames, "an integer >= 0")


@dataclass(frozen=True)
class CalibrateSettings:
    """Score-threshold calibration of the bundle (``evaluate.calibrate_bundle``), after the evaluation.

    The ONNX Runtime backend's boxes with the node's post-processing at ``floor`` are split:
    the last ``holdout_fraction`` of the evaluated frames are held out, the rest calibrate; the
    calibrated thresholds go into ``ml_package.param.yaml`` unless they lose F1 on the held-out
    frames. A legacy bundle has no thresholds to calibrate.

    Attributes:
        enabled: run the calibration step (needs the evaluation).
        floor: score down to which the node's boxes are kept for the calibration.
        holdout_fraction: share of the evaluated frames held out, in [0, 1) (0: judged in-sample).
        target_precision: ``None``: maximise F1; else the smallest threshold reaching it, (0, 1].
        min_gt, min_predictions: a class x bin cell with fewer keeps the bundle's threshold.
    """

    enabled: bool = True
    floor: float = 0.1
    holdout_fraction: float = 0.5
    target_precision: float | None = None
    min_gt: int = 10
    min_predictions: int = 10

    def __post_init__(self) -> None:
        if not 0.0 <= self.floor < 1.0:
            _fail("calibrate.floor", self.floor, "a score in [0, 1)")
        if not 0.0 <= self.holdout_fraction < 1.0:
            _fail("calibrate.holdout_fraction", self.holdout_fraction, "a fraction in [0, 1)")
        if self.target_precision is not None and not 0.0 < self.target_precision <= 1.0:
            _fail("calibrate.target_precision", self.target_precision, "null (max F1) or a precision in (0, 1]")
        for name in ("min_gt", "min_predictions"):
            if getattr(self, name) < 1:
                _fail(f"calibrate.{name}", getattr(self, name), "an integer >= 1")


@dataclass(frozen=True)
class BenchmarkSettings:
    """Per-stage latency of every backend on one frame.

    Attributes:
        enabled: run the benchmark step.
        iterations: timed runs per backend.
        warmup: untimed runs before them.
    """

    enabled: bool = True
    iterations: int = 5
    warmup: int = 1

    def __post_init__(self) -> None:
        if self.iterations < 1:
            _fail("benchmark.iterations", self.iterations, "an integer >= 1")
        if self.warmup < 0:
            _fail("benchmark.warmup", self.warmup, "an integer >= 0")


@dataclass(frozen=True)
class DeploySettings:
    """Everything the main job needs (see the module doc for the YAML layout).

    Attributes:
        config: model config: a preset name, a project ``.yaml`` or an AWML/mmdet3d ``.py``.
        checkpoint: mmdet3d/AWML checkpoint; ``None`` = the bundled demo checkpoint.
        dataset: T4 scene(s), split file or info ``.pkl``; ``None`` = the generated sample set.
        out: output folder; ``None`` = ``outputs/deploy-<timestamp>``.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
    """

    config: str = "demo"
    checkpoint: Path | None = None
    dataset: str | None = None
    out: Path | None = None
    device: str = "auto"
    export: ExportSettings = field(default_factory=ExportSettings)
    verify: VerifySettings = field(default_factory=VerifySettings)
    evaluate: EvaluateSettings = field(default_factory=EvaluateSettings)
    calibrate: CalibrateSettings = field(default_factory=CalibrateSettings)
    benchmark: BenchmarkSettings = field(default_factory=BenchmarkSettings)

    def __post_init__(self) -> None:
        if not self.config:
            _fail("config", self.config, "a preset name or a config file")
        if not _DEVICE.match(self.device):
            _fail("device", self.device, "auto, cpu, cuda or cuda:N")

    def to_dict(self) -> dict[str, Any]:
        """YAML/JSON-ready nested dict (paths as strings); :meth:`from_dict` reads it back."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DeploySettings":
        """Build from a (partial) nested dict; unknown keys and wrong types raise :class:`ConfigError`."""
        return _build(cls, data, "")


def load_settings(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> DeploySettings:
    """Defaults, then the YAML file at ``path``, then ``overrides``.

    Args:
        path: deploy config YAML (layout in the module doc), or ``None``.
        overrides: dotted field name -> value, e.g. ``{"verify.frames": 5, "checkpoint": "a.pth"}``;
            ``None`` values are ignored (a flag that was not given).

    Raises:
        ConfigError: unreadable YAML, unknown keys, wrong types or values out of range.
    """
    data = _read_yaml(Path(path)) if path is not None else {}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        *sections, key = dotted.split(".")
        target = data
        for section in sections:
            current = target.get(section)
            target[section] = dict(current) if isinstance(current, Mapping) else {}
            target = target[section]
        target[key] = value
    try:
        return DeploySettings.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path is not None else str(exc)) from exc


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"deploy config {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read deploy config {path}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"deploy config {path} must hold a mapping of settings, got {type(data).__name__}")
    return data


def _build(cls: type, data: Any, prefix: str) -> Any:
    """Instance of the settings dataclass ``cls`` from ``data``, field types checked."""
    if not isinstance(data, Mapping):
        _fail(prefix.rstrip(".") or "<root>", data, "a mapping of settings")
    hints = typing.get_type_hints(cls)
    allowed = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        where = f"section '{prefix.rstrip('.')}'" if prefix else "deploy config"
        raise ConfigError(f"{where} has unknown keys {unknown}; allowed: {', '.join(allowed)}")
    kwargs = {key: _convert(value, hints[key], prefix + key) for key, value in data.items()}
    return cls(**kwargs)


def _convert(value: Any, hint: Any, name: str) -> Any:
    """``value`` as type ``hint`` (bool, int, float, str, Path, a settings section, or ``X | None``)."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        _fail(name, value, f"a value of type {_type_name(hint)} (null is not allowed)")
    kind = next(t for t in options if t is not type(None))
    if dataclasses.is_dataclass(kind):
        return _build(kind, value, name + ".")
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is str and isinstance(value, str):
        return value
    if kind is Path and isinstance(value, (str, Path)) and str(value):
        return Path(value)
    _fail(name, value, f"a value of type {_type_name(hint)}")


def _type_name(hint: Any) -> str:
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    names = {bool: "boolean", int: "integer", float: "number", str: "string", Path: "path", type(None): "null"}
    return " or ".join(names.get(t, getattr(t, "__name__", str(t))) for t in options)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return str(value) if isinstance(value, Path) else value
