"""Read AWML / mmdet3d v1.x info pickles into :class:`FrameRecord` lists, without mmdet3d.

Layout (mmdet3d >= 1.1 ``update_infos_to_v2`` / ``create_data.py``, AWML T4 converters)::

    {"metainfo": {"classes": [...]                       # AWML T4 infos
                  | "categories": {name: label, ...},    # mmdet3d's own (-1 = ignored name)
                  "dataset": "nuscenes" | "kitti" | ..., "info_version": "1.1", ...},
     "data_list": [{
        "token" | "sample_idx": ..., "timestamp": seconds (KITTI: none), "ego2global": 4x4,
        "lidar_points": {"lidar_path": str, "num_pts_feats": int, "lidar2ego": 4x4},
        "lidar_sweeps": [{"lidar_points": {"lidar_path", "lidar2sensor": 4x4, "lidar2ego"},
                          "ego2global": 4x4, "timestamp": seconds}, ...],   # nearest first
        "images": {"CAM2": {"lidar2cam": 4x4}, ...},                         # KITTI
        "instances": [{"bbox_3d": [...], "bbox_label_3d": int,
                       "velocity": [vx, vy], "num_lidar_pts": int, "bbox_3d_isvalid": bool}, ...]}]}

Boxes: nuScenes and AWML T4 infos store LiDAR boxes ``[x, y, z, l, w, h, yaw]`` with z at the
box *centre* (mmdet3d builds them with ``origin=(0.5, 0.5, 0.5)``). KITTI infos
(``metainfo.dataset == "kitti"``) store *camera* boxes ``[x, y, z, l, h, w, ry]`` with the
bottom centre, which mmdet3d's ``KittiDataset`` converts with ``inv(images.CAM2.lidar2cam)``:
centre ``inv(lidar2cam) @ xyz`` (then raised by h/2), size ``[l, w, h]``, yaw ``-ry - pi/2``.

Point paths: mmdet3d's v1.x infos store bare file names that its datasets join to a
``data_prefix`` (nuScenes ``samples/LIDAR_TOP``, ``sweeps/LIDAR_TOP``; KITTI
``training/velodyne_reduced``); each path is tried as stored, then under those prefixes
(for sweeps, mmdet3d keeps only the file name). Every path must stay inside the data root
(:func:`centerpoint_deploy.data.paths.contained_path`).

Sweep transform: mmdet3d stores ``lidar2sensor = [R^T | -R^T t]`` for the sweep's
``sensor2lidar = [R | t]``; we apply the exact inverse ``p' = R p + t``. (mmdet3d's loader
computes ``p @ R^T - (-R^T t) = R p + R^T t``, which differs from it by ``(R^T - I) t``: a few
cm while the ego turns, zero when it drives straight.)

``bbox_3d_isvalid`` does not drop boxes: it is ``num_lidar_pts > 0`` in these converters and
evaluation removes boxes without points itself.

Unpickling refuses every class except plain containers and numpy array/scalar reconstruction.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from centerpoint_deploy.data.categories import CategoryMapping, class_indices
from centerpoint_deploy.data.dataset import FrameRecord, SweepRecord
from centerpoint_deploy.data.frame import GroundTruth
from centerpoint_deploy.data.geometry import make_transform
from centerpoint_deploy.data.paths import contained_path
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

#: Largest timestamp accepted (s): year ~2286; larger values are corrupt (and overflow int64 us).
MAX_TIMESTAMP_S = 1e10
#: Largest box coordinate / size accepted (m); larger values are corrupt and overflow float32.
MAX_BOX_VALUE = 1e7

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
    if not isinstance(metainfo, dict) or ("classes" not in metainfo and "categories" not in metainfo):
        raise DatasetError(f"{path}: 'metainfo' must be a dict with 'classes' (a list) or 'categories' (a dict "
                           "name -> label): the names bbox_label_3d indexes")
    return data


def source_classes(metainfo: Mapping[str, Any], path: Path) -> list[str]:
    """The class names ``bbox_label_3d`` indexes: ``metainfo.classes``, or the names of
    ``metainfo.categories`` ordered by label (names labelled -1 are ignored ones)."""
    if "classes" in metainfo:
        classes = metainfo["classes"]
        if isinstance(classes, (str, bytes, Mapping)) or not isinstance(classes, (Sequence, np.ndarray)):
            raise DatasetError(f"{path}: metainfo.classes = {classes!r:.80} is invalid: a list of class names")
        return [str(c) for c in classes]
    categories = metainfo["categories"]
    if not isinstance(categories, Mapping):
        raise DatasetError(f"{path}: metainfo.categories is a {type(categories).__name__}; "
                           "allowed: a dict class name -> label")
    labelled = {}
    for name, label in categories.items():
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or label < -1:
            raise DatasetError(f"{path}: metainfo.categories[{name!r}] = {label!r} is invalid: an integer label >= -1")
        if label >= 0:
            labelled.setdefault(int(label), []).append(str(name))
    if sorted(labelled) != list(range(len(labelled))) or any(len(v) > 1 for v in labelled.values()):
        raise DatasetError(f"{path}: metainfo.categories labels {sorted(labelled)} are invalid: each of "
                           "0..N-1 must name exactly one class")
    return [labelled[i][0] for i in range(len(labelled))]


#: Folders mmdet3d's datasets prepend (``data_prefix``) to the bare file names their v1.x
#: info pickles store, per ``metainfo.dataset``; tried after ``data_root / lidar_path`` itself.
DATA_PREFIXES: Mapping[str, tuple[str, ...]] = {
    "nuscenes": ("samples/LIDAR_TOP", "sweeps/LIDAR_TOP"),
    "kitti": ("training/velodyne_reduced", "training/velodyne", "testing/velodyne_reduced", "testing/velodyne"),
}


def _resolve(root: Path, relative: Any, prefixes: Sequence[str], record: str) -> str:
    """The existing point file a record names, inside ``root`` (see module doc)."""
    path = contained_path(root, relative, record)
    candidates = [path, *(contained_path(root, f"{prefix}/{relative}", record) for prefix in prefixes),
                  *(contained_path(root, f"{prefix}/{Path(relative).name}", record) for prefix in prefixes)]
    candidates = list(dict.fromkeys(candidates))
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    raise DatasetError(f"{record}: point file {relative} does not exist (tried {', '.join(map(str, candidates))}; "
                       f"paths are resolved against data_root={root})")


def _matrix(value: Any, what: str) -> np.ndarray:
    matrix = np.asarray(value, dtype=np.float64)
    if matrix.shape != (4, 4) or not np.isfinite(matrix).all():
        raise DatasetError(f"{what} must be a finite 4x4 matrix, got shape {matrix.shape}"
                           f"{'' if matrix.shape != (4, 4) else ' with NaN/inf entries'}")
    return matrix


def _seconds_to_us(value: Any, what: str) -> int:
    seconds = float(value)
    if not math.isfinite(seconds) or abs(seconds) > MAX_TIMESTAMP_S:
        raise DatasetError(f"{what} = {value!r} is invalid: a finite time in seconds within ±{MAX_TIMESTAMP_S:g}")
    return int(round(seconds * 1e6))


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
                     box_origin_z: float | None = None) -> list[FrameRecord]:
    """Parse an info pickle into frame records (in ``data_list`` order).

    Args:
        path: the ``.pkl`` file.
        class_names: classes the ground-truth labels index into; the pickle's class names
            (:func:`source_classes`) are mapped through ``category_mapping`` (names it does not
            list are taken as class names).
        category_mapping: preset name or dict; boxes of classes outside ``class_names`` are dropped.
        max_sweeps: previous sweeps recorded per key frame (``lidar_sweeps`` is nearest first).
        data_root: folder point paths are resolved against and must stay inside (default:
            the pickle's folder).
        box_origin_z: where LiDAR ``bbox_3d`` z sits in the box: 0.5 = centre (nuScenes, T4),
            0.0 = bottom; default 0.5 (KITTI camera boxes are converted, see module doc).

    Raises:
        DatasetError: forbidden classes in the pickle, bad layout, paths outside the data
            root, missing point files.
    """
    path = Path(path)
    data = load_info_pickle(path)
    root = Path(data_root) if data_root is not None else path.parent
    metainfo = data["metainfo"]
    source_to_ours = np.append(class_indices(source_classes(metainfo, path), category_mapping, class_names), -1)
    dataset = str(metainfo.get("dataset", "")).lower()
    layout = _Layout(root, DATA_PREFIXES.get(dataset, DATA_PREFIXES["nuscenes"]), dataset == "kitti",
                     0.5 if box_origin_z is None else float(box_origin_z))
    records = []
    for i, item in enumerate(data["data_list"]):
        what = f"{path}: data_list[{i}]"
        try:
            if not isinstance(item, Mapping):
                raise TypeError(f"an entry is a {type(item).__name__}, not a dict")
            records.append(_record(item, what, layout, tuple(class_names), source_to_ours, max_sweeps))
        except (KeyError, ValueError, TypeError, IndexError, OverflowError) as exc:
            raise DatasetError(f"{what} is malformed ({type(exc).__name__}: {exc})") from exc
    return records


@dataclass(frozen=True)
class _Layout:
    """How one pickle's records are read: data root, path prefixes, box convention."""

    root: Path
    prefixes: tuple[str, ...]
    camera_boxes: bool
    box_origin_z: float


def _record(item: Mapping[str, Any], what: str, layout: _Layout, class_names: tuple[str, ...],
            source_to_ours: np.ndarray, max_sweeps: int) -> FrameRecord:
    lidar_points = item["lidar_points"]
    lidar2ego = _matrix(lidar_points.get("lidar2ego", np.eye(4)), f"{what}.lidar_points.lidar2ego")
    ego2global = _matrix(item.get("ego2global", np.eye(4)), f"{what}.ego2global")
    timestamp = _seconds_to_us(item.get("timestamp", 0.0), f"{what}.timestamp")
    sweeps = []
    for j, sweep in enumerate(item.get("lidar_sweeps", [])[:max_sweeps]):
        where = f"{what}.lidar_sweeps[{j}]"
        sweep_time = _seconds_to_us(sweep["timestamp"], f"{where}.timestamp")
        if sweep_time > timestamp:
            raise DatasetError(f"{where}.timestamp = {sweep['timestamp']!r} is after its key frame's "
                               f"{item.get('timestamp')!r}: sweeps must precede their key frame")
        sweeps.append(SweepRecord(_resolve(layout.root, sweep["lidar_points"]["lidar_path"], layout.prefixes,
                                           f"{where} field 'lidar_points.lidar_path'"),
                                  sweep_time, _sweep_to_key(sweep, lidar2ego, ego2global, where)))
    gt = None
    if "instances" in item:
        to_lidar = None
        if layout.camera_boxes:
            to_lidar = np.linalg.inv(_matrix(item["images"]["CAM2"]["lidar2cam"], f"{what}.images.CAM2.lidar2cam"))
        gt = _ground_truth(item["instances"], class_names, source_to_ours, layout.box_origin_z, to_lidar)
    token = str(item.get("token", item.get("sample_idx", "")))
    scene = str(item.get("scene_name", item.get("scene_token", "")))
    return FrameRecord(token, scene, timestamp,
                       _resolve(layout.root, lidar_points["lidar_path"], layout.prefixes,
                                f"{what} field 'lidar_points.lidar_path'"),
                       ego2global, lidar2ego, tuple(sweeps), gt)


def camera_to_lidar_boxes(boxes: np.ndarray, cam2lidar: np.ndarray) -> np.ndarray:
    """KITTI camera boxes ``[N, 7]`` ``[x, y, z, l, h, w, ry]`` (bottom centre) -> LiDAR boxes
    ``[N, 7]`` ``[x, y, z, l, w, h, yaw]`` (z at the centre), as mmdet3d's ``KittiDataset``."""
    bottom = boxes[:, :3] @ cam2lidar[:3, :3].T + cam2lidar[:3, 3]
    size = boxes[:, [3, 5, 4]]
    bottom[:, 2] += 0.5 * size[:, 2]
    yaw = -boxes[:, 6] - np.pi / 2
    yaw = yaw - np.floor(yaw / (2 * np.pi) + 0.5) * 2 * np.pi
    return np.concatenate([bottom, size, yaw[:, None]], axis=1)


def _ground_truth(instances: Sequence[Mapping[str, Any]], class_names: tuple[str, ...], source_to_ours: np.ndarray,
                  box_origin_z: float, cam2lidar: np.ndarray | None) -> GroundTruth:
    if not instances:
        return GroundTruth.empty(class_names)
    count = len(instances)
    boxes7 = np.array([inst["bbox_3d"][:7] for inst in instances], dtype=np.float64).reshape(count, 7)
    velocity = np.array([inst.get("velocity", [np.nan, np.nan])[:2] for inst in instances], dtype=np.float64)
    velocity = velocity.reshape(count, 2)
    if not np.isfinite(boxes7).all() or np.abs(boxes7).max(initial=0.0) > MAX_BOX_VALUE:
        raise ValueError(f"bbox_3d values must be finite and within ±{MAX_BOX_VALUE:g} m / rad")
    if cam2lidar is not None:
        boxes7 = camera_to_lidar_boxes(boxes7, cam2lidar)
    else:
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
