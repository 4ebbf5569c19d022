"""The two ROS parameter files of Autoware's v4.1 model bundle: writer, reader and validator.

``ml_package.param.yaml`` and ``detection_class_remapper.param.yaml`` as the current
``autoware_lidar_centerpoint`` node reads them (bundle v4.1, 2026-08). The rules come from the
node's sources (autowarefoundation/autoware_universe, ``perception/autoware_lidar_centerpoint/``):

- ``schema/ml_package.schema.json``: the required keys, their types, ``trt_precision`` in
  ``{fp32, fp16}``, unique ``class_names``, ``downsample_factor >= 1``,
  ``yaw_norm_thresholds`` items in [0, 1], ``detection_score_thresholds`` =
  ``{distance_bin_upper_limits, min_confidence_scores: {CLASS: [one per bin]}}``.
- ``lib/ml_package_version.cpp``: ``version`` is ``<major>.<minor>`` with an optional ``v``;
  the node refuses any major other than 4 and any minor below 1.
- ``src/node.cpp``: every ``model_params`` key is declared without a default (a missing one
  stops the node), arrays are read as ``std::vector<double>`` / ``std::vector<int64_t>`` (ROS 2
  refuses ``[1, 2]`` where it declared doubles), class names map to labels case-sensitively.
- ``CenterPointConfig``: a score or yaw-norm threshold outside ``[0, 1)`` is silently replaced
  by 0 (keep everything), so 1.0 is refused here.
- the class remapper (``DetectionClassRemapper::setParameters`` / ``mapClasses``): three flat,
  row-major, equally long square lists indexed ``[source_label * N + destination_label]`` over
  Autoware's object labels (``UNKNOWN, CAR, TRUCK, BUS, TRAILER, MOTORCYCLE, BICYCLE,
  PEDESTRIAN``), a box relabelled to the first destination whose rule holds.

Our validator is stricter than the JSON schema where the node is: a file that passes it is
one the node starts with and reads as written. Every error names the file and the key.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Sequence

from centerpoint_deploy import contract
from centerpoint_deploy.errors import BundleError, ConfigError
from centerpoint_deploy.postprocess.node_params import ClassRemapper, NodePostprocessParams, ScoreThresholds

#: The bundle version this tool writes; the node reads major 4 from minor 1 upward.
BUNDLE_VERSION = "v4.1"
SUPPORTED_MAJOR_VERSION = 4
MINIMUM_MINOR_VERSION = 1
_VERSION = re.compile(r"^v?([0-9]+)\.([0-9]+)$")  # the schema's pattern

ML_PACKAGE_FILE = "ml_package.param.yaml"
REMAPPER_FILE = "detection_class_remapper.param.yaml"
#: Precisions the node's schema allows for ``trt_precision``.
TRT_PRECISIONS = ("fp32", "fp16")

#: Autoware's ``ObjectClassification`` labels in label order (UNKNOWN = 0 ... PEDESTRIAN = 7).
AUTOWARE_LABELS = ("UNKNOWN", "CAR", "TRUCK", "BUS", "TRAILER", "MOTORCYCLE", "BICYCLE", "PEDESTRIAN")
#: The node's class name -> label rule (``getSemanticType``); any other name is UNKNOWN.
_NAME_TO_LABEL = {"CAR": 1, "TRUCK": 2, "BUS": 3, "TRAILER": 4, "MOTORBIKE": 5, "BICYCLE": 6, "PEDESTRIAN": 7}

_PATH_KEYS = ("encoder_onnx_path", "encoder_engine_path", "head_onnx_path", "head_engine_path",
              "class_remapper_param_path")
#: ``model_params`` keys describing the model (see ``autoware_params.autoware_model_params``).
MODEL_FACT_KEYS = ("class_names", "point_feature_size", "max_voxel_size", "point_cloud_range", "voxel_size",
                   "downsample_factor", "encoder_in_feature_size", "has_variance", "has_twist")
_REMAPPER_KEYS = ("allow_remapping_by_area_matrix", "min_area_matrix", "max_area_matrix")


def autoware_label(class_name: str) -> int:
    """The node's label of a class (``getSemanticType`` on the upper-case name)."""
    return _NAME_TO_LABEL.get(class_name.upper(), 0)


@dataclass(frozen=True)
class MlPackage:
    """A validated ``ml_package.param.yaml``.

    Attributes:
        version: the bundle version as written (``"v4.1"``).
        paths: ``encoder_onnx_path`` ... ``class_remapper_param_path`` -> path relative to the bundle.
        trt_precision: ``"fp32"`` or ``"fp16"``.
        model_facts: the :data:`MODEL_FACT_KEYS` of ``model_params`` as read.
        thresholds: score thresholds, class names as in the file (upper case).
        yaw_norm_thresholds: one per class, in ``class_names`` order.
    """

    version: str
    paths: dict[str, str]
    trt_precision: str
    model_facts: dict[str, Any]
    thresholds: ScoreThresholds
    yaw_norm_thresholds: tuple[float, ...]


# ----- writers ------------------------------------------------------------------------------

def ml_package_document(model_facts: dict[str, Any], params: NodePostprocessParams,
                        trt_precision: str) -> dict[str, Any]:
    """The ``ml_package.param.yaml`` document of a model (facts from ``autoware_model_params``)."""
    names = model_facts["class_names"]
    t = params.thresholds
    model_params = {
        **model_facts,
        "yaw_norm_thresholds": [float(v) for v in params.yaw_norm_thresholds],
        "detection_score_thresholds": {
            "distance_bin_upper_limits": [float(b) for b in t.distance_bin_upper_limits],
            "min_confidence_scores": {name: [float(v) for v in row]
                                      for name, row in zip(names, t.min_confidence_scores)},
        },
    }
    return {"/**": {"ros__parameters": {
        "version": BUNDLE_VERSION,
        "encoder_onnx_path": contract.ENCODER_FILE,
        "encoder_engine_path": contract.ENCODER_FILE.removesuffix(".onnx") + ".engine",
        "head_onnx_path": contract.HEAD_FILE,
        "head_engine_path": contract.HEAD_FILE.removesuffix(".onnx") + ".engine",
        "class_remapper_param_path": REMAPPER_FILE,
        "trt_precision": trt_precision,
        "model_params": model_params,
    }}}


def remapper_document(remapper: ClassRemapper) -> dict[str, Any]:
    """``detection_class_remapper.param.yaml``: flat row-major ``8 x 8`` lists over Autoware's labels.

    Raises:
        ConfigError: a rule the node cannot express, because its source or destination class
            shares its label with another class (two classes the node names UNKNOWN).
    """
    labels = [autoware_label(name) for name in remapper.class_names]
    n = len(AUTOWARE_LABELS)
    allow, low, high = [0] * n * n, [0.0] * n * n, [0.0] * n * n
    for i, row in enumerate(remapper.allow_remapping_by_area_matrix):
        for j, allowed in enumerate(row):
            if not allowed:
                continue
            for k in (i, j):
                if labels.count(labels[k]) > 1:
                    raise ConfigError(f"the class remapper rule {remapper.class_names[i]} -> {remapper.class_names[j]} "
                                      f"cannot be written: class '{remapper.class_names[k]}' shares the node's label "
                                      f"{AUTOWARE_LABELS[labels[k]]} with another class")
            index = labels[i] * n + labels[j]
            allow[index] = 1
            low[index] = float(remapper.min_area_matrix[i][j])
            high[index] = float(remapper.max_area_matrix[i][j])
    return {"/**": {"ros__parameters": {"allow_remapping_by_area_matrix": allow, "min_area_matrix": low,
                                        "max_area_matrix": high}}}


# ----- readers / validators -----------------------------------------------------------------

class _Reader:
    """Type checks of one parsed YAML file; every failure names the file and the dotted key."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, key: str, problem: str) -> BundleError:
        return BundleError(f"{self.file}: '{key}' {problem}")

    def mapping(self, value: Any, key: str, required: Sequence[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a mapping, got {_kind(value)}")
        for name in required:
            if name not in value:
                raise self.fail(_join(key, name), "is missing")
        unknown = sorted(str(k) for k in set(value) - set(required))
        if unknown:
            raise self.fail(_join(key, unknown[0]), f"is not a key the node reads (known: {', '.join(required)})")
        return value

    def integer(self, value: Any, key: str, minimum: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(key, f"must be an integer, got {value!r}")
        if value < minimum:
            raise self.fail(key, f"must be >= {minimum}, got {value}")
        return value

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, got {value!r}")
        return value

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"must be a non-empty string, got {value!r}")
        return value

    def floats(self, value: Any, key: str, length: int | None = None, *, finite: bool = True) -> list[float]:
        """A list ROS 2 reads as ``double[]``: every item a float (``1.0``, not ``1``)."""
        if not isinstance(value, list):
            raise self.fail(key, f"must be a list, got {_kind(value)}")
        if length is not None and len(value) != length:
            raise self.fail(key, f"has {len(value)} values, needs {length}")
        bad = [v for v in value if not isinstance(v, float) or math.isnan(v) or (finite and math.isinf(v))]
        if bad:
            raise self.fail(key, f"must hold {'finite ' if finite else ''}decimal numbers (ROS 2 reads [1, 2] as "
                                 f"integers where the node declares doubles; write 1.0); got {bad[0]!r}")
        return value

    def thresholds(self, value: Any, key: str, length: int) -> list[float]:
        values = self.floats(value, key, length)
        bad = [v for v in values if not 0.0 <= v < 1.0]
        if bad:
            raise self.fail(key, f"values must be in [0, 1) (the node replaces any other value by 0); got {bad[0]}")
        return values


def parse_ml_package(document: Any, file: str = ML_PACKAGE_FILE) -> MlPackage:
    """Validate a parsed ``ml_package.param.yaml`` (see the module docstring for the rules).

    Raises:
        BundleError: ``<file>: '<key>' <problem>`` for the first rule broken.
    """
    r = _Reader(file)
    params = r.mapping(_ros_parameters(r, document), "", ["version", *_PATH_KEYS, "trt_precision", "model_params"])
    version = params["version"]
    if not isinstance(version, str):
        raise r.fail("version", f"must be a string such as \"{BUNDLE_VERSION}\" (quote it), got {version!r}")
    match = _VERSION.match(version)
    if match is None:
        raise r.fail("version", f"= {version!r} is not of the form 'v<major>.<minor>'")
    major, minor = int(match.group(1)), int(match.group(2))
    if major != SUPPORTED_MAJOR_VERSION or minor < MINIMUM_MINOR_VERSION:
        raise r.fail("version", f"= {version!r}: the node reads bundle versions v{SUPPORTED_MAJOR_VERSION}."
                                f"{MINIMUM_MINOR_VERSION} or later within major {SUPPORTED_MAJOR_VERSION}")
    paths = {name: _relative_path(r, params[name], name) for name in _PATH_KEYS}
    precision = params["trt_precision"]
    if precision not in TRT_PRECISIONS:
        raise r.fail("trt_precision", f"= {precision!r} is not one of {list(TRT_PRECISIONS)}")

    m = r.mapping(params["model_params"], "model_params",
                  [*MODEL_FACT_KEYS, "yaw_norm_thresholds", "detection_score_thresholds"])
    names = m["class_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise r.fail("model_params.class_names", f"must be a non-empty list of names, got {names!r}")
    if len(set(names)) != len(names):
        raise r.fail("model_params.class_names", f"must be unique, got {names}")
    lower = [n for n in names if n != n.upper()]
    if lower:
        raise r.fail("model_params.class_names",
                     f"must be upper case (the node maps 'CAR', not '{lower[0]}'), got {names}")
    for name in ("point_feature_size", "max_voxel_size", "downsample_factor", "encoder_in_feature_size"):
        r.integer(m[name], f"model_params.{name}", 1)
    for name in ("has_variance", "has_twist"):
        r.boolean(m[name], f"model_params.{name}")
    cloud_range = r.floats(m["point_cloud_range"], "model_params.point_cloud_range", 6)
    if any(cloud_range[i] >= cloud_range[i + 3] for i in range(3)):
        raise r.fail("model_params.point_cloud_range", f"needs min < max on every axis, got {cloud_range}")
    voxel = r.floats(m["voxel_size"], "model_params.voxel_size", 3)
    if any(v <= 0 for v in voxel):
        raise r.fail("model_params.voxel_size", f"must be positive, got {voxel}")
    yaw = r.thresholds(m["yaw_norm_thresholds"], "model_params.yaw_norm_thresholds", len(names))

    key = "model_params.detection_score_thresholds"
    scores = r.mapping(m["detection_score_thresholds"], key, ["distance_bin_upper_limits", "min_confidence_scores"])
    bins = r.floats(scores["distance_bin_upper_limits"], f"{key}.distance_bin_upper_limits")
    if not bins or any(b <= 0 for b in bins) or any(a >= b for a, b in zip(bins, bins[1:])):
        raise r.fail(f"{key}.distance_bin_upper_limits", f"must be positive and strictly ascending, got {bins}")
    per_class = r.mapping(scores["min_confidence_scores"], f"{key}.min_confidence_scores", names)
    rows = tuple(tuple(r.thresholds(per_class[n], f"{key}.min_confidence_scores.{n}", len(bins))) for n in names)
    return MlPackage(
        version=version, paths=paths, trt_precision=precision,
        model_facts={name: m[name] for name in MODEL_FACT_KEYS},
        thresholds=ScoreThresholds(tuple(names), tuple(bins), rows),
        yaw_norm_thresholds=tuple(yaw),
    )


def parse_remapper(document: Any, class_names: Sequence[str], file: str = REMAPPER_FILE) -> ClassRemapper:
    """Validate a parsed ``detection_class_remapper.param.yaml`` and read it over ``class_names``.

    Args:
        document: the parsed YAML.
        class_names: the model's classes (any case), in head order.

    Raises:
        BundleError: malformed matrices, or a rule from or to a label no class of the model has
            (or that two of its classes share), which the model's post-processing cannot apply.
    """
    r = _Reader(file)
    params = r.mapping(_ros_parameters(r, document), "", _REMAPPER_KEYS)
    allow = params["allow_remapping_by_area_matrix"]
    if not isinstance(allow, list) or any(not isinstance(v, int) or isinstance(v, bool) or v not in (0, 1)
                                          for v in allow):
        raise r.fail("allow_remapping_by_area_matrix", "must be a list of 0 / 1 integers")
    low = r.floats(params["min_area_matrix"], "min_area_matrix", finite=False)
    high = r.floats(params["max_area_matrix"], "max_area_matrix", finite=False)
    n = math.isqrt(len(allow))
    if not allow or n * n != len(allow):
        raise r.fail("allow_remapping_by_area_matrix", f"has {len(allow)} values; the node needs a non-empty "
                                                       f"square matrix ({len(AUTOWARE_LABELS) ** 2} for its "
                                                       f"{len(AUTOWARE_LABELS)} labels)")
    for name, values in (("min_area_matrix", low), ("max_area_matrix", high)):
        if len(values) != len(allow):
            raise r.fail(name, f"has {len(values)} values, allow_remapping_by_area_matrix {len(allow)}")

    labels = [autoware_label(name) for name in class_names]
    size = len(class_names)
    allowed = [[0] * size for _ in range(size)]
    lows = [[0.0] * size for _ in range(size)]
    highs = [[0.0] * size for _ in range(size)]
    for source in range(n):
        destinations = [d for d in range(n) if allow[source * n + d]]
        for destination in destinations:
            index = source * n + destination
            rule = f"allow_remapping_by_area_matrix[{index}]"
            what = f"remaps {_label_name(source)} -> {_label_name(destination)}"
            if destination not in labels or source not in labels:
                raise r.fail(rule, f"{what}, a label none of the model's classes {list(class_names)} has")
            if labels.count(destination) > 1:
                raise r.fail(rule, f"{what}, a label several of the model's classes share")
            j = labels.index(destination)
            for i in (k for k, label in enumerate(labels) if label == source):
                allowed[i][j], lows[i][j], highs[i][j] = 1, low[index], high[index]
        # The node tries destinations in label order; the model's remapper in class order.
        if [labels.index(d) for d in destinations] != sorted(labels.index(d) for d in destinations):
            raise r.fail("allow_remapping_by_area_matrix", f"{_label_name(source)} may become several classes whose "
                                                           "label order differs from the model's class order")
    return ClassRemapper(tuple(class_names), _tuples(allowed), _tuples(lows), _tuples(highs))


def _label_name(label: int) -> str:
    return AUTOWARE_LABELS[label] if label < len(AUTOWARE_LABELS) else f"label {label}"


def _relative_path(r: _Reader, value: Any, key: str) -> str:
    path = PurePosixPath(r.string(value, key))
    if path.is_absolute() or ".." in path.parts:
        raise r.fail(key, f"= '{value}' must be a path inside the bundle (relative, no '..')")
    return str(path)


def _ros_parameters(r: _Reader, document: Any) -> Any:
    """The ``/**: ros__parameters:`` block of a ROS 2 parameter file."""
    if not isinstance(document, dict) or not isinstance(document.get("/**"), dict) \
            or "ros__parameters" not in document["/**"]:
        raise r.fail("/**.ros__parameters", "is missing (a ROS 2 parameter file starts '/**: ros__parameters:')")
    unknown = sorted(str(k) for k in set(document) - {"/**"}) \
        + sorted(str(k) for k in set(document["/**"]) - {"ros__parameters"})
    if unknown:
        raise r.fail(unknown[0], "is not a key the node reads (everything goes under '/**: ros__parameters:')")
    params = document["/**"]["ros__parameters"]
    if not isinstance(params, dict):
        raise r.fail("/**.ros__parameters", f"must be a mapping, got {_kind(params)}")
    return params


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _tuples(matrix: list[list[Any]]) -> tuple[tuple[Any, ...], ...]:
    return tuple(tuple(row) for row in matrix)
