"""Read AWML / mmdet3d v1.x info pickles into :class:`FrameRecord` lists, without mmdet3d.

Layout (mmdet3d >= 1.1 ``update_infos_to_v2``, AWML T4 converters)::

    {"metainfo": {"classes": [...], ...},
     "data_list": [{
        "token" | "sample_idx": ..., "timestamp": seconds, "ego2global": 4x4,
        "lidar_points": {"lidar_path": str, "num_pts_feats": int, "lidar2ego": 4x4},
        "lidar_sweeps": [{"lidar_points": {"lidar_path", "lidar2sensor": 4x4, "lidar2ego"},
                          "ego2global": 4x4, "timestamp": seconds}, ...],   # nearest first
        "instances": [{"bbox_3d": [x, y, z, l, w, h, yaw], "bbox_label_3d": int,
                       "velocity": [vx, vy], "num_lidar_pts": int, "bbox_3d_isvalid": bool}, ...]}]}

Box z: nuScenes and AWML T4 infos store the box *centre* (mmdet3d builds their boxes with
``origin=(0.5, 0.5, 0.5)``); KITTI-style infos store the bottom (``box_origin_z=0.0``).

Sweep transform: mmdet3d stores ``lidar2sensor = [R^T | -R^T t]`` for the sweep's
``sensor2lidar = [R | t]``; we apply the exact inverse ``p' = R p + t``. (mmdet3d's loader
computes ``p @ R^T - (-R^T t) = R p + R^T t``, which differs from it by ``(R^T - I) t``: a few
cm while the ego turns, zero when it drives straight.)

``bbox_3d_isvalid`` does not drop boxes: it is ``num_lidar_pts > 0`` in these converters and
evaluation removes boxes without points itself.

Unpickling refuses every class except plain containers and numpy array/scalar reconstruction.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from centerpoint_deploy.data.categories import CategoryMapping, class_indices
from centerpoint_deploy.data.dataset import FrameRecord, SweepRecord
from centerpoint_deploy.data.frame import GroundTruth
from centerpoint_deploy.data.geometry import make_transform
from centerpoint_deploy.data.sweeps import sweep_to_key_transform
from centerpoint_deploy.errors import DatasetError

#: ``(module, name)`` pairs the unpickler may resolve: numpy arrays, dtypes and scalars (for
#: numpy 1.x and 2.x module paths, pickle protocols 2-5) and builtin containers.
ALLOWED_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),  # protocol 2 stores array bytes as latin-1 text
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex"), ("builtins", "bytearray"),
    ("collections", "OrderedDict"),
})

#: nuScenes attribute names in mmdet3d's ``attr_label`` order.
NUSCENES_ATTRIBUTES = ("cycle.with_rider", "cycle.without_rider", "pedestrian.moving", "pedestrian.standing",
                       "pedestrian.sitting_lying_down", "vehicle.moving", "vehicle.parked", "vehicle.stopped")


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only :data:`ALLOWED_GLOBALS`; anything else is a DatasetError."""

    def find_class(self, module: str, name: str) -> Any:
        # protocol 2 pickles name the builtins module by its Python 2 name
        if ("builtins" if module == "__builtin__" else module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise DatasetError(f"info pickle refers to class {module}.{name}, which is not allowed: only plain "
                           "containers and numpy arrays/scalars are unpickled (no mmdet3d / mmengine objects)")


def load_info_pickle(path: str | Path) -> dict[str, Any]:
    """Unpickle an info file safely and check its top-level layout.

    Returns:
        ``{"data_list": list[dict], "metainfo": dict}``.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"info pickle {path} does not exist")
    try:
        with path.open("rb") as f:
            data = RestrictedUnpickler(f).load()
    except DatasetError as exc:
        raise DatasetError(f"{path}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DatasetError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("data_list"), list):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise DatasetError(f"{path}: expected an mmdet3d v1.x info dict with 'data_list' and 'metainfo', got {keys}")
    metainfo = data.get("metainfo", {})
    if not isinstance(metainfo, dict) or "classes" not in metainfo:
        raise DatasetError(f"{path}: 'metainfo' must be a dict with 'classes' (the names bbox_label_3d indexes)")
    return data


#: Folders mmdet3d's nuScenes dataset prepends (``data_prefix``) to the bare file names its
#: v1.x info pickles store; tried after ``data_root / lidar_path`` itself.
NUSCENES_PREFIXES = ("samples/LIDAR_TOP", "sweeps/LIDAR_TOP")


def _resolve(data_root: Path, relative: str, what: str, source: Path) -> str:
    path = Path(relative)
    if path.is_absolute():
        candidates = [path]
    else:
        candidates = [data_root / path, *(data_root / prefix / path for prefix in NUSCENES_PREFIXES)]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    raise DatasetError(f"{source}: {what} {relative} does not exist (tried {', '.join(map(str, candidates))}; "
                       f"paths are resolved against data_root={data_root})")


def _matrix(value: Any, what: str) -> np.ndarray:
    matrix = np.asarray(value, dtype=np.float64)
    if matrix.shape != (4, 4):
        raise DatasetError(f"{what} must be a 4x4 matrix, got shape {matrix.shape}")
    return matrix


def _sweep_to_key(sweep: Mapping[str, Any], lidar2ego: np.ndarray, ego2global: np.ndarray, what: str) -> np.ndarray:
    lidar_points = sweep.get("lidar_points", {})
    if "lidar2sensor" in lidar_points:
        return np.linalg.inv(_matrix(lidar_points["lidar2sensor"], f"{what}.lidar_points.lidar2sensor"))
    if "sensor2lidar_rotation" in sweep:
        return make_transform(np.asarray(sweep["sensor2lidar_rotation"]), sweep["sensor2lidar_translation"])
    if "lidar2ego" in lidar_points and "ego2global" in sweep:
        return sweep_to_key_transform(_matrix(lidar_points["lidar2ego"], f"{what}.lidar_points.lidar2ego"),
                                      _matrix(sweep["ego2global"], f"{what}.ego2global"), lidar2ego, ego2global)
    raise DatasetError(f"{what} has no transform to the key frame: need lidar_points.lidar2sensor, "
                       "sensor2lidar_rotation/translation, or lidar_points.lidar2ego with ego2global")


def read_info_pickle(path: str | Path, *, class_names: Sequence[str], category_mapping: CategoryMapping = "j6gen2",
                     max_sweeps: int = 1, data_root: str | Path | None = None,
                     box_origin_z: float = 0.5) -> list[FrameRecord]:
    """Parse an info pickle into frame records (in ``data_list`` order).

    Args:
        path: the ``.pkl`` file.
        class_names: classes the ground-truth labels index into; ``metainfo.classes`` names are
            mapped through ``category_mapping`` (names it does not list are taken as class names).
        category_mapping: preset name or dict; boxes of classes outside ``class_names`` are dropped.
        max_sweeps: previous sweeps recorded per key frame (``lidar_sweeps`` is nearest first).
        data_root: folder relative point paths are resolved against (default: the pickle's folder).
        box_origin_z: where ``bbox_3d`` z sits in the box: 0.5 = centre (nuScenes, T4), 0.0 = bottom.

    Raises:
        DatasetError: forbidden classes in the pickle, bad layout, missing point files.
    """
    path = Path(path)
    data = load_info_pickle(path)
    root = Path(data_root) if data_root is not None else path.parent
    source_classes = [str(c) for c in data["metainfo"]["classes"]]
    source_to_ours = np.append(class_indices(source_classes, category_mapping, class_names), -1)  # [-1] -> dropped
    records = []
    for i, item in enumerate(data["data_list"]):
        what = f"{path}: data_list[{i}]"
        try:
            records.append(_record(item, what, root, path, tuple(class_names), source_to_ours, max_sweeps, box_origin_z))
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            raise DatasetError(f"{what} is malformed ({type(exc).__name__}: {exc})") from exc
    return records


def _record(item: Mapping[str, Any], what: str, root: Path, source: Path, class_names: tuple[str, ...],
            source_to_ours: np.ndarray, max_sweeps: int, box_origin_z: float) -> FrameRecord:
    lidar_points = item["lidar_points"]
    lidar2ego = _matrix(lidar_points.get("lidar2ego", np.eye(4)), f"{what}.lidar_points.lidar2ego")
    ego2global = _matrix(item.get("ego2global", np.eye(4)), f"{what}.ego2global")
    timestamp_s = float(item["timestamp"])
    sweeps = tuple(
        SweepRecord(_resolve(root, sweep["lidar_points"]["lidar_path"], "sweep point file", source),
                    int(round(float(sweep["timestamp"]) * 1e6)),
                    _sweep_to_key(sweep, lidar2ego, ego2global, f"{what}.lidar_sweeps[{j}]"))
        for j, sweep in enumerate(item.get("lidar_sweeps", [])[:max_sweeps])
    )
    gt = _ground_truth(item.get("instances", []), class_names, source_to_ours, box_origin_z) if "instances" in item else None
    token = str(item.get("token", item.get("sample_idx", "")))
    scene = str(item.get("scene_name", item.get("scene_token", "")))
    return FrameRecord(token, scene, int(round(timestamp_s * 1e6)),
                       _resolve(root, lidar_points["lidar_path"], "point file", source),
                       ego2global, lidar2ego, sweeps, gt)


def _ground_truth(instances: Sequence[Mapping[str, Any]], class_names: tuple[str, ...], source_to_ours: np.ndarray,
                  box_origin_z: float) -> GroundTruth:
    if not instances:
        return GroundTruth.empty(class_names)
    count = len(instances)
    boxes7 = np.array([inst["bbox_3d"][:7] for inst in instances], dtype=np.float64).reshape(count, 7)
    velocity = np.array([inst.get("velocity", [np.nan, np.nan])[:2] for inst in instances], dtype=np.float64)
    boxes7[:, 2] += (0.5 - box_origin_z) * boxes7[:, 5]
    source_labels = np.array([inst["bbox_label_3d"] for inst in instances], dtype=np.int64)
    if np.any(source_labels >= len(source_to_ours) - 1) or np.any(source_labels < -1):
        raise ValueError(f"bbox_label_3d values {sorted(set(source_labels.tolist()))} must lie in "
                         f"[-1, {len(source_to_ours) - 2}] (metainfo.classes has {len(source_to_ours) - 1})")
    labels = source_to_ours[source_labels]  # -1 stays -1 through the appended entry
    keep = np.flatnonzero(labels >= 0)
    attributes = [NUSCENES_ATTRIBUTES[inst["attr_label"]] if 0 <= inst.get("attr_label", -1) < len(NUSCENES_ATTRIBUTES)
                  else str(inst.get("attribute_name", "")) for inst in instances]
    return GroundTruth(
        boxes=np.concatenate([boxes7, velocity], axis=1)[keep].astype(np.float32),
        labels=labels[keep],
        class_names=class_names,
        num_lidar_pts=np.array([inst.get("num_lidar_pts", -1) for inst in instances], dtype=np.int64)[keep],
        attributes=[attributes[k] for k in keep],
        instance_tokens=[str(instances[k].get("instance_token", "")) for k in keep],
    )
