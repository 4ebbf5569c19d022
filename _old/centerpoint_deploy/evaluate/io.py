"""JSON files of boxes (predictions or ground truth), metric configs and metric results.

Box files follow the nuScenes submission layout, in the LiDAR frame::

    {
      "meta": {"kind": "predictions" | "ground_truth", "size_order": "lwh" | "wlh", ...},
      "results": {
        "<sample_token>": [
          {"translation": [x, y, z],        # metres, LiDAR frame, z at the box centre
           "size": [l, w, h],               # in meta.size_order ("wlh" is nuScenes' order)
           "yaw": 0.3,                      # radians CCW from +x; or "rotation": [w, x, y, z]
           "velocity": [vx, vy],            # m/s; null entries allowed (no velocity)
           "detection_name": "car",
           "detection_score": 0.87,         # predictions only
           "attribute_name": "",            # optional, "" = none
           "num_lidar_pts": 12},            # ground truth only; optional (-1 = unknown)
          ...
        ], ...
      }
    }

``meta.size_order`` is required: swapping length and width silently would change the scale
error. Files we write use ``"lwh"`` and ``"yaw"``. A nuScenes-devkit file with
``"rotation"`` quaternions and ``"size_order": "wlh"`` loads too (its yaw is the heading of
the rotated x axis, as the devkit computes it), provided its coordinates are centred on the
ego/sensor: distances for the class range are measured from ``MetricConfig.ego_origin``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from centerpoint_deploy.errors import EvaluationError
from centerpoint_deploy.outputs import replacing
from centerpoint_deploy.structures import Detections
from centerpoint_deploy.evaluate.data_classes import (
    DetectionMetrics,
    MetricConfig,
    SampleBoxes,
    nuscenes_metric_config,
    t4_metric_config,
)

#: The two kinds of box files.
BOX_FILE_KINDS = ("predictions", "ground_truth")
#: Accepted ``meta.size_order`` values.
SIZE_ORDERS = ("lwh", "wlh")
#: Identifies files written by this module.
FORMAT_NAME = "centerpoint-deploy/boxes"
FORMAT_VERSION = 1


class _DuplicateKey(Exception):
    """A JSON object names one key twice (``json`` would silently keep the last)."""


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` of :func:`_read_json`: refuse duplicated keys."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _read_json(path: str | Path, what: str) -> Any:
    """The JSON content of ``path``; a duplicated key (e.g. a sample token given twice), invalid
    or too deeply nested JSON is an :class:`EvaluationError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"{what} file '{path}' does not exist")
    try:
        with path.open() as f:
            return json.load(f, object_pairs_hook=_unique_object)
    except _DuplicateKey as exc:
        raise EvaluationError(f"{what} file '{path}': key {exc.args[0]!r} appears twice in one JSON object "
                              f"(a sample token or field given twice); refusing to pick one") from None
    except RecursionError:
        raise EvaluationError(f"{what} file '{path}' is nested too deeply to be a {what} file") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, or an integer of too many digits
        raise EvaluationError(f"{what} file '{path}' is not valid JSON: {exc}") from None


def _write_json(path: str | Path, content: Any) -> None:
    """Write ``content`` atomically (a unique temporary file beside ``path``, then moved into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as temporary, temporary.open("w") as f:
        json.dump(content, f, allow_nan=False)


# ----------------------------------------------------------------------------------------------
# Box files
# ----------------------------------------------------------------------------------------------
#: A rotation quaternion whose norm is below this is refused (no rotation can be read from it).
MIN_QUATERNION_NORM = 1e-6
#: A rotation that turns the box's x axis this close to vertical (horizontal part of the unit
#: x axis below it) has no heading; it is refused.
MIN_HEADING_NORM = 1e-6


def quaternion_yaw(quaternions: np.ndarray) -> np.ndarray:
    """``ndarray[K]`` heading (radians) of the rotated +x axis for quaternions ``[K, 4]`` (w, x, y, z).

    The quaternions need not be unit length (the heading does not depend on the scale); use
    :func:`degenerate_rotations` first to find those without a heading.
    """
    w, x, y, z = quaternions.T
    return np.arctan2(2.0 * (x * y + w * z), w * w + x * x - y * y - z * z)


def degenerate_rotations(quaternions: np.ndarray) -> np.ndarray:
    """``ndarray[K]`` bool: quaternions ``[K, 4]`` (w, x, y, z) that give no heading: non-finite,
    (near) zero norm, or turning the x axis (near) vertical."""
    finite = np.isfinite(quaternions).all(axis=1)
    q = np.where(finite[:, None], quaternions, 0.0)
    norm2 = np.sum(q * q, axis=1)
    w, x, y, z = q.T
    # The rotated x axis times |q|^2: its horizontal part over |q|^2 is that of the unit axis.
    heading = np.hypot(2.0 * (x * y + w * z), w * w + x * x - y * y - z * z)
    small = norm2 < MIN_QUATERNION_NORM ** 2
    return ~finite | small | (heading < MIN_HEADING_NORM * np.where(small, 1.0, norm2))


def _field_array(records: list[dict], key: str, width: int, where: str, *, allow_null: bool = False,
                 default: float | None = None) -> np.ndarray:
    """``ndarray[K, width]`` float64 of ``records[i][key]``; the first bad record names the error."""
    values = [r.get(key, default) for r in records]
    try:
        arr = np.array([[math.nan if (allow_null and v is None) else v for v in value] if width > 1 else
                        [value] for value in values], dtype=np.float64)
        ok = arr.shape == (len(records), width)
    except (TypeError, ValueError):
        ok = False
    if ok:
        return arr
    for i, value in enumerate(values):
        good = isinstance(value, (int, float)) and not isinstance(value, bool) if width == 1 else (
            isinstance(value, list) and len(value) == width
            and all((allow_null and v is None) or (isinstance(v, (int, float)) and not isinstance(v, bool))
                    for v in value))
        if not good:
            wanted = "a number" if width == 1 else f"a list of {width} numbers" + (" or nulls" if allow_null else "")
            raise EvaluationError(f"{where}[{i}].{key}: expected {wanted}, got {value!r}")
    raise EvaluationError(f"{where}: field '{key}' could not be read")  # unreachable for JSON input


def _string_array(records: list[dict], key: str, where: str, default: str | None) -> np.ndarray:
    values = [r.get(key, default) for r in records]
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise EvaluationError(f"{where}[{i}].{key}: expected a string, got {value!r}")
    return np.array(values, dtype=str) if values else np.zeros(0, dtype=str)


def _parse_sample(records: Any, where: str, kind: str, size_order: str) -> SampleBoxes:
    if not isinstance(records, list):
        raise EvaluationError(f"{where}: expected a list of boxes, got {type(records).__name__}")
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise EvaluationError(f"{where}[{i}]: expected a box object, got {type(record).__name__}")
        missing = [k for k in ("translation", "size", "velocity", "detection_name") if k not in record]
        if "yaw" not in record and "rotation" not in record:
            missing.append("yaw (or rotation)")
        if kind == "predictions" and "detection_score" not in record:
            missing.append("detection_score")
        if missing:
            raise EvaluationError(f"{where}[{i}]: missing fields {missing}")
    if not records:
        return SampleBoxes.empty()
    translation = _field_array(records, "translation", 3, where)
    size = _field_array(records, "size", 3, where)
    if size_order == "wlh":
        size = size[:, [1, 0, 2]]
    has_yaw = np.array(["yaw" in r for r in records])
    yaw = np.zeros(len(records))
    if has_yaw.any():
        yaw[has_yaw] = _field_array([r for r in records if "yaw" in r], "yaw", 1, where)[:, 0]
    if not has_yaw.all():
        quats = _field_array([r for r in records if "yaw" not in r], "rotation", 4, where)
        bad = degenerate_rotations(quats)
        if bad.any():
            i = int(np.flatnonzero(~has_yaw)[np.flatnonzero(bad)[0]])
            raise EvaluationError(f"{where}[{i}].rotation: {records[i]['rotation']!r} is a degenerate rotation "
                                  f"(zero, non-finite or turning the box's x axis vertical): it has no heading")
        yaw[~has_yaw] = quaternion_yaw(quats)
    velocity = _field_array(records, "velocity", 2, where, allow_null=True)
    if kind == "predictions":
        scores = _field_array(records, "detection_score", 1, where)[:, 0]
        num_pts = np.full(len(records), -1, dtype=np.int64)
    else:
        scores = np.full(len(records), -1.0)
        pts = _field_array(records, "num_lidar_pts", 1, where, default=-1)[:, 0]
        if (pts != np.round(pts)).any() or (pts < -1).any():
            i = int(np.flatnonzero((pts != np.round(pts)) | (pts < -1))[0])
            raise EvaluationError(f"{where}[{i}].num_lidar_pts: expected an integer >= 0 (or -1), "
                                  f"got {records[i]['num_lidar_pts']!r}")
        num_pts = pts.astype(np.int64)
    boxes = np.concatenate([translation, size, yaw[:, None], velocity], axis=1)
    try:
        return SampleBoxes(boxes, _string_array(records, "detection_name", where, None), scores,
                           _string_array(records, "attribute_name", where, ""), num_pts)
    except EvaluationError as exc:
        raise EvaluationError(f"{where}: {exc}") from None


def load_boxes(path: str | Path, kind: str) -> tuple[dict[str, SampleBoxes], dict[str, Any]]:
    """Read a box file (format in the module docstring).

    Args:
        path: the JSON file.
        kind: ``"predictions"`` or ``"ground_truth"``; must agree with ``meta.kind`` if the
            file states one.

    Returns:
        ``(sample token -> SampleBoxes, meta)``, samples in file order.

    Raises:
        EvaluationError: naming the sample, box index and field that is wrong.
    """
    if kind not in BOX_FILE_KINDS:
        raise EvaluationError(f"kind must be one of {list(BOX_FILE_KINDS)}, got {kind!r}")
    content = _read_json(path, kind.replace("_", " "))
    if not isinstance(content, dict) or "results" not in content or "meta" not in content:
        keys = sorted(content) if isinstance(content, dict) else type(content).__name__
        raise EvaluationError(f"{path}: expected an object with 'meta' and 'results', got {keys}")
    meta, results = content["meta"], content["results"]
    if not isinstance(meta, dict):
        raise EvaluationError(f"{path}: 'meta' must be an object, got {type(meta).__name__}")
    if "kind" in meta and meta["kind"] != kind:
        raise EvaluationError(f"{path}: meta.kind is {meta['kind']!r} but the file was given as {kind!r}")
    size_order = meta.get("size_order")
    if size_order not in SIZE_ORDERS:
        raise EvaluationError(f"{path}: meta.size_order must be one of {list(SIZE_ORDERS)} "
                              f"('wlh' for nuScenes files), got {size_order!r}")
    if not isinstance(results, dict):
        raise EvaluationError(f"{path}: 'results' must map sample tokens to box lists, got {type(results).__name__}")
    samples = {token: _parse_sample(records, f"{path}: results[{token!r}]", kind, size_order)
               for token, records in results.items()}
    return samples, meta


def box_records(boxes: SampleBoxes, kind: str) -> list[dict[str, Any]]:
    """JSON records of one sample's boxes (``size`` in ``lwh`` order, ``yaw``); NaN -> null."""
    out = []
    for i in range(len(boxes)):
        b = boxes.boxes[i].tolist()
        record = {
            "translation": b[0:3], "size": b[3:6], "yaw": b[6],
            "velocity": [None if math.isnan(v) else v for v in b[7:9]],
            "detection_name": str(boxes.names[i]), "attribute_name": str(boxes.attributes[i]),
        }
        if kind == "predictions":
            record["detection_score"] = float(boxes.scores[i])
        else:
            record["num_lidar_pts"] = int(boxes.num_pts[i])
        out.append(record)
    return out


def box_file(samples: Mapping[str, SampleBoxes], kind: str, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON content of a box file of ``samples``; ``meta`` adds entries (kind, size_order,
    format, version and frame are set here)."""
    if kind not in BOX_FILE_KINDS:
        raise EvaluationError(f"kind must be one of {list(BOX_FILE_KINDS)}, got {kind!r}")
    full_meta = dict(meta or {})
    full_meta.update(format=FORMAT_NAME, version=FORMAT_VERSION, kind=kind, size_order="lwh", frame="lidar")
    return {"meta": full_meta, "results": {t: box_records(b, kind) for t, b in samples.items()}}


def save_boxes(path: str | Path, samples: Mapping[str, SampleBoxes], kind: str,
               meta: Mapping[str, Any] | None = None) -> None:
    """Write ``samples`` as a box file (see :func:`box_file`)."""
    _write_json(path, box_file(samples, kind, meta))


#: Output layouts of ``detect``: ``predictions`` is the box file above (what ``score`` reads),
#: ``records`` is ``{file: [{"box": [9 floats], "score": s, "label": name}, ...]}``.
DETECT_FORMATS = ("predictions", "records")


def check_detect_format(output_format: str) -> None:
    """Raise :class:`EvaluationError` unless ``output_format`` is one of :data:`DETECT_FORMATS`."""
    if output_format not in DETECT_FORMATS:
        raise EvaluationError(f"--format must be one of {list(DETECT_FORMATS)}, got {output_format!r}")


def detect_output(records: Mapping[str, list[dict[str, Any]]], class_names: Sequence[str], output_format: str,
                  meta: Mapping[str, Any] | None = None) -> Any:
    """JSON content of ``detect``'s output in ``output_format``.

    Args:
        records: point file -> ``Detections.to_records`` (``{"box", "score", "label"}`` per box).
        class_names: the model's classes (labels are among them).
        output_format: one of :data:`DETECT_FORMATS`. ``predictions`` is a box file whose sample
            keys are the point files as given (a ground-truth file for ``score`` must use the
            same keys); attributes follow the class-and-speed rule of ``evaluate``.
        meta: extra ``meta`` entries of a ``predictions`` file (``class_names`` is always set).
    """
    check_detect_format(output_format)
    if output_format == "records":
        return dict(records)
    names = list(class_names)
    samples = {}
    for key, boxes in records.items():
        labels = [names.index(r["label"]) for r in boxes]
        detections = Detections(torch.tensor([r["box"] for r in boxes], dtype=torch.float32).reshape(-1, 9),
                                torch.tensor([r["score"] for r in boxes], dtype=torch.float32),
                                torch.tensor(labels, dtype=torch.int64))
        samples[key] = SampleBoxes.from_detections(detections, names)
    return box_file(samples, "predictions", {**dict(meta or {}), "class_names": names})


# ----------------------------------------------------------------------------------------------
# Metric configs and results
# ----------------------------------------------------------------------------------------------
#: Named metric presets accepted by :func:`load_metric_config`.
METRIC_PRESETS = ("t4", "nuscenes")


def load_metric_config(spec: str | Path, class_names: Sequence[str]) -> MetricConfig:
    """``"t4"`` (121 m for every class of ``class_names``, distance buckets), ``"nuscenes"``
    (devkit cvpr_2019 ranges of the classes of ``class_names``; see :func:`nuscenes_metric_config`)
    or a JSON file holding :meth:`MetricConfig.to_dict` keys."""
    if str(spec) == "t4":
        return t4_metric_config(class_names)
    if str(spec) == "nuscenes":
        return nuscenes_metric_config(class_names)
    if not str(spec).endswith(".json"):
        raise EvaluationError(f"metric must be one of {list(METRIC_PRESETS)} or a .json file, got {str(spec)!r}")
    return MetricConfig.from_dict(_read_json(spec, "metric config"))


def save_metrics(path: str | Path, metrics: DetectionMetrics, include_curves: bool = True) -> None:
    _write_json(path, metrics.to_dict(include_curves=include_curves))


def load_metrics(path: str | Path) -> DetectionMetrics:
    return DetectionMetrics.from_dict(_read_json(path, "metrics"))
