"""Read T4 (TIER IV, nuScenes schema) scenes into :class:`FrameRecord` lists.

A scene folder holds ``annotation/*.json`` (one JSON list per table) and the point files the
``sample_data`` records name, relative to the scene folder (``data/LIDAR_CONCAT/0.pcd.bin``).
AWML dataset roots may put each scene in a numbered version sub-folder (``<scene>/1/``); the
highest version is used.

Boxes go from the global frame to the key frame's LiDAR frame through the inverse ego pose
and the inverse sensor calibration. ``size`` is stored ``[w, l, h]``; boxes come out
``[x, y, z, l, w, h, yaw, vx, vy]``. Velocity is the annotation's ``velocity`` field when it
has one, otherwise the nuScenes ``box_velocity`` rule (centre difference of the neighbouring
annotations of the instance over their time difference; NaN when the instance has a single
annotation or the neighbours are more than 1.5 s, or 3 s when both exist, apart); it is
rotated into the LiDAR frame with its z component set to 0, as mmdet3d's converter does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from centerpoint_deploy.data.categories import CategoryMapping, class_indices
from centerpoint_deploy.data.dataset import FrameRecord, SweepRecord
from centerpoint_deploy.data.frame import GroundTruth
from centerpoint_deploy.data.geometry import invert_transform, make_transform, quaternion_to_matrix, transform_boxes
from centerpoint_deploy.data.paths import contained_path
from centerpoint_deploy.data.sweeps import sweep_to_key_transform
from centerpoint_deploy.errors import DatasetError

#: Fields the reader needs, per table.
REQUIRED_FIELDS: Mapping[str, tuple[str, ...]] = {
    "scene": ("token", "name"),
    "sample": ("token", "timestamp", "scene_token"),
    "sample_data": ("token", "sample_token", "ego_pose_token", "calibrated_sensor_token", "filename",
                    "is_key_frame", "timestamp", "prev"),
    "ego_pose": ("token", "translation", "rotation"),
    "calibrated_sensor": ("token", "sensor_token", "translation", "rotation"),
    "sensor": ("token", "channel", "modality"),
    "sample_annotation": ("token", "sample_token", "instance_token", "translation", "rotation", "size",
                          "attribute_tokens", "num_lidar_pts", "prev", "next"),
    "instance": ("token", "category_token"),
    "category": ("token", "name"),
    "attribute": ("token", "name"),
}

#: LiDAR channels tried in this order when a scene has several and none is asked for.
PREFERRED_LIDAR_CHANNELS = ("LIDAR_CONCAT", "LIDAR_TOP")

#: nuScenes ``box_velocity``: neighbours further apart than this (s; doubled when both exist) give NaN.
MAX_VELOCITY_TIME_DIFF = 1.5

Table = list[dict[str, Any]]


def resolve_scene_dir(path: str | Path) -> Path | None:
    """The folder holding ``annotation/`` for a scene folder, its highest numbered version
    sub-folder, or None if ``path`` is not a T4 scene."""
    path = Path(path)
    if (path / "annotation").is_dir():
        return path
    versions = [p for p in path.iterdir() if p.is_dir() and p.name.isdigit() and (p / "annotation").is_dir()] \
        if path.is_dir() else []
    return max(versions, key=lambda p: int(p.name)) if versions else None


def load_tables(scene_dir: Path) -> dict[str, Table]:
    """Read the tables the reader needs from ``scene_dir/annotation`` and check their fields."""
    tables: dict[str, Table] = {}
    for name, fields in REQUIRED_FIELDS.items():
        path = scene_dir / "annotation" / f"{name}.json"
        if not path.is_file():
            raise DatasetError(f"T4 scene {scene_dir}: table file {path} is missing "
                               f"(needed: {', '.join(REQUIRED_FIELDS)})")
        try:
            records = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{path}: malformed JSON ({exc})") from exc
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise DatasetError(f"{path}: expected a JSON list of objects, got {type(records).__name__}")
        for i, record in enumerate(records):
            missing = [f for f in fields if f not in record]
            if missing:
                raise DatasetError(f"{path}: record {i} (token {record.get('token', '?')!r}) lacks "
                                   f"field(s) {', '.join(missing)}; required: {', '.join(fields)}")
        tables[name] = records
    return tables


def _by_token(tables: Mapping[str, Table], name: str) -> dict[str, dict[str, Any]]:
    return {r["token"]: r for r in tables[name]}


def _lookup(index: Mapping[str, dict[str, Any]], token: str, table: str, scene_dir: Path) -> dict[str, Any]:
    try:
        return index[token]
    except KeyError:
        raise DatasetError(f"T4 scene {scene_dir}: token {token!r} is not in table '{table}'") from None


def _choose_channel(sensors: Table, wanted: str | None, scene_dir: Path) -> str:
    channels = [s["channel"] for s in sensors if s["modality"] == "lidar"]
    if wanted is not None:
        if wanted not in channels:
            raise DatasetError(f"T4 scene {scene_dir}: LiDAR channel {wanted!r} not found; it has {channels}")
        return wanted
    for channel in PREFERRED_LIDAR_CHANNELS:
        if channel in channels:
            return channel
    if len(channels) == 1:
        return channels[0]
    raise DatasetError(f"T4 scene {scene_dir}: cannot choose among LiDAR channels {channels}; pass lidar_channel")


def _pose(record: Mapping[str, Any]) -> np.ndarray:
    return make_transform(record["rotation"], record["translation"])


def annotation_velocities(annotations: Table, sample_times: Mapping[str, int]) -> np.ndarray:
    """Global-frame velocity ``[A, 3]`` (m/s) of every annotation: its ``velocity`` field, or the
    nuScenes ``box_velocity`` centre difference (see module doc); NaN where undefined."""
    count = len(annotations)
    index = {a["token"]: i for i, a in enumerate(annotations)}
    centers = np.array([a["translation"] for a in annotations], dtype=np.float64).reshape(count, 3)
    times = np.array([sample_times[a["sample_token"]] for a in annotations], dtype=np.float64) * 1e-6
    prev = np.array([index.get(a["prev"], -1) for a in annotations], dtype=np.int64)
    nxt = np.array([index.get(a["next"], -1) for a in annotations], dtype=np.int64)
    own = np.arange(count)
    first = np.where(prev >= 0, prev, own)
    last = np.where(nxt >= 0, nxt, own)
    dt = times[last] - times[first]
    limit = np.where((prev >= 0) & (nxt >= 0), 2 * MAX_VELOCITY_TIME_DIFF, MAX_VELOCITY_TIME_DIFF)
    valid = ((prev >= 0) | (nxt >= 0)) & (dt > 0) & (dt <= limit)
    with np.errstate(divide="ignore", invalid="ignore"):
        velocity = np.where(valid[:, None], (centers[last] - centers[first]) / dt[:, None], np.nan)
    given = [a.get("velocity") for a in annotations]
    has_field = np.array([v is not None and len(v) >= 2 for v in given], dtype=bool)
    if has_field.any():
        field = np.array([list(v) + [0.0] * (3 - len(v)) for v in given if v is not None and len(v) >= 2],
                         dtype=np.float64)
        velocity[has_field] = field[:, :3]
    return velocity


def read_scene(scene_path: str | Path, *, class_names: Sequence[str], category_mapping: CategoryMapping = "j6gen2",
               max_sweeps: int = 1, lidar_channel: str | None = None) -> list[FrameRecord]:
    """Parse one T4 scene folder into frame records (key frames in time order).

    Args:
        scene_path: the scene folder (or its parent holding numbered versions).
        class_names: classes the ground-truth labels index into.
        category_mapping: preset name or dict, category name -> class name; unmapped dropped.
        max_sweeps: previous sweeps recorded per key frame (via ``sample_data.prev``).
        lidar_channel: sensor channel to read; default LIDAR_CONCAT, then LIDAR_TOP, then the only one.

    Raises:
        DatasetError: not a scene, missing/malformed tables, dangling tokens, missing point files.
    """
    scene_dir = resolve_scene_dir(scene_path)
    if scene_dir is None:
        raise DatasetError(f"{scene_path} is not a T4 scene: no annotation/ folder in it or in a numbered version sub-folder")
    tables = load_tables(scene_dir)
    try:
        return _scene_records(scene_dir, tables, tuple(class_names), category_mapping, max_sweeps, lidar_channel)
    except (ValueError, TypeError, IndexError, OverflowError) as exc:
        raise DatasetError(f"T4 scene {scene_dir}: malformed annotation values ({type(exc).__name__}: {exc})") from exc


def _check_links(scene_dir: Path, tables: Mapping[str, Table]) -> None:
    """Refuse an empty sample table, annotations of samples that do not exist, and
    ``sample_data.prev`` links that do not go back in time (which includes every cycle)."""
    if not tables["sample"]:
        raise DatasetError(f"T4 scene {scene_dir}: table 'sample' is empty; a scene needs at least one key frame")
    samples = {s["token"] for s in tables["sample"]}
    for ann in tables["sample_annotation"]:
        if ann["sample_token"] not in samples:
            raise DatasetError(f"T4 scene {scene_dir}: sample_annotation {ann['token']!r} field 'sample_token' = "
                               f"{ann['sample_token']!r} is not in table 'sample'")
    times = {sd["token"]: int(sd["timestamp"]) for sd in tables["sample_data"]}
    for sd in tables["sample_data"]:
        prev = sd["prev"]
        if prev and prev in times and times[prev] >= times[sd["token"]]:
            raise DatasetError(f"T4 scene {scene_dir}: sample_data {sd['token']!r} field 'prev' = {prev!r} points to "
                               f"a record at timestamp {times[prev]}, not before its own {times[sd['token']]}; "
                               "prev must name an earlier sweep (a cycle or a future sweep is refused)")


def _scene_records(scene_dir: Path, tables: Mapping[str, Table], class_names: tuple[str, ...],
                   category_mapping: CategoryMapping, max_sweeps: int, lidar_channel: str | None) -> list[FrameRecord]:
    _check_links(scene_dir, tables)
    channel = _choose_channel(tables["sensor"], lidar_channel, scene_dir)
    sensors = _by_token(tables, "sensor")
    calibs = _by_token(tables, "calibrated_sensor")
    poses = _by_token(tables, "ego_pose")
    sample_data = _by_token(tables, "sample_data")
    scenes = _by_token(tables, "scene")

    def channel_of(sd: Mapping[str, Any]) -> str:
        calib = _lookup(calibs, sd["calibrated_sensor_token"], "calibrated_sensor", scene_dir)
        return _lookup(sensors, calib["sensor_token"], "sensor", scene_dir)["channel"]

    key_sd = {sd["sample_token"]: sd for sd in tables["sample_data"] if sd["is_key_frame"] and channel_of(sd) == channel}
    sample_times = {s["token"]: int(s["timestamp"]) for s in tables["sample"]}
    annotations = tables["sample_annotation"]
    velocities = annotation_velocities(annotations, sample_times)
    by_sample: dict[str, list[int]] = {}
    for i, ann in enumerate(annotations):
        by_sample.setdefault(ann["sample_token"], []).append(i)
    instances = _by_token(tables, "instance")
    categories = _by_token(tables, "category")
    attributes = _by_token(tables, "attribute")
    category_names = [
        _lookup(categories, _lookup(instances, a["instance_token"], "instance", scene_dir)["category_token"],
                "category", scene_dir)["name"]
        for a in annotations
    ]
    labels = class_indices(category_names, category_mapping, class_names)

    def transforms(sd: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        calib = _lookup(calibs, sd["calibrated_sensor_token"], "calibrated_sensor", scene_dir)
        return _pose(calib), _pose(_lookup(poses, sd["ego_pose_token"], "ego_pose", scene_dir))

    def point_file(sd: Mapping[str, Any]) -> str:
        path = contained_path(scene_dir, sd["filename"],
                              f"T4 scene {scene_dir}: sample_data {sd['token']!r} field 'filename'")
        if not path.is_file():
            raise DatasetError(f"T4 scene {scene_dir}: point file {path} (sample_data {sd['token']}) is missing")
        return str(path)

    records: list[FrameRecord] = []
    for sample in sorted(tables["sample"], key=lambda s: (s["scene_token"], s["timestamp"])):
        scene_name = _lookup(scenes, sample["scene_token"], "scene", scene_dir)["name"]
        sd = key_sd.get(sample["token"])
        if sd is None:
            raise DatasetError(f"T4 scene {scene_dir}: sample {sample['token']} has no key-frame {channel} sample_data")
        lidar2ego, ego2global = transforms(sd)
        sweeps = []
        prev_token = sd["prev"]
        while prev_token and len(sweeps) < max_sweeps:
            prev_sd = _lookup(sample_data, prev_token, "sample_data", scene_dir)
            if int(prev_sd["timestamp"]) > int(sample["timestamp"]):
                raise DatasetError(f"T4 scene {scene_dir}: sample_data {prev_token!r} field 'timestamp' = "
                                   f"{prev_sd['timestamp']} is after its key frame's sample {sample['token']!r} "
                                   f"timestamp {sample['timestamp']}; allowed: sweeps before their key frame")
            sweep_l2e, sweep_e2g = transforms(prev_sd)
            sweeps.append(SweepRecord(point_file(prev_sd), int(prev_sd["timestamp"]),
                                      sweep_to_key_transform(sweep_l2e, sweep_e2g, lidar2ego, ego2global)))
            prev_token = prev_sd["prev"]
        ann_idx = [i for i in by_sample.get(sample["token"], []) if labels[i] >= 0]
        gt = _ground_truth([annotations[i] for i in ann_idx], labels[ann_idx], velocities[ann_idx],
                           invert_transform(ego2global @ lidar2ego), attributes, tuple(class_names), scene_dir)
        records.append(FrameRecord(sample["token"], scene_name, int(sample["timestamp"]), point_file(sd),
                                   ego2global, lidar2ego, tuple(sweeps), gt))
    return records


def _ground_truth(annotations: Table, labels: np.ndarray, velocities: np.ndarray, global2lidar: np.ndarray,
                  attributes: Mapping[str, dict[str, Any]], class_names: tuple[str, ...], scene_dir: Path) -> GroundTruth:
    """Boxes of one key frame's annotations (already filtered to mapped classes) in its LiDAR frame."""
    count = len(annotations)
    if count == 0:
        return GroundTruth.empty(class_names)
    centers = np.array([a["translation"] for a in annotations], dtype=np.float64)
    rotations = quaternion_to_matrix(np.array([a["rotation"] for a in annotations], dtype=np.float64))
    size_wlh = np.array([a["size"] for a in annotations], dtype=np.float64)
    planar_velocity = velocities.copy()
    planar_velocity[:, 2] = 0.0
    centers, yaws, velocity = transform_boxes(global2lidar, centers, rotations, planar_velocity)
    boxes = np.concatenate([centers, size_wlh[:, [1, 0, 2]], yaws[:, None], velocity[:, :2]], axis=1)
    attribute_names = [
        _lookup(attributes, a["attribute_tokens"][0], "attribute", scene_dir)["name"] if a["attribute_tokens"] else ""
        for a in annotations
    ]
    return GroundTruth(boxes.astype(np.float32), labels.astype(np.int64), class_names,
                       np.array([a["num_lidar_pts"] for a in annotations], dtype=np.int64).reshape(count),
                       attribute_names, [a["instance_token"] for a in annotations])
