"""Write a recorded scene as a T4 dataset scene folder (nuScenes-schema JSON + ``.pcd.bin``).

Layout written::

    <scene>/annotation/{scene,sample,sample_data,ego_pose,calibrated_sensor,sensor,
                        sample_annotation,instance,category,attribute,visibility,log,map,
                        object_ann,surface_ann}.json
    <scene>/data/<CHANNEL>/<index>.pcd.bin      # float32 x, y, z, intensity (0..255), 0

Every table of the nuScenes schema is written (``map`` names the scene's log and no mask
file), plus T4's 2-D image tables ``object_ann`` and ``surface_ann``, empty (there are no
cameras), so nuscenes-devkit opens a scene as
``NuScenes(version="annotation", dataroot=<scene>)``.

Tokens are deterministic (hash of scene name, table and key), so a seed reproduces the folder
byte for byte. Annotation sizes are stored ``[w, l, h]`` as the schema wants.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from centerpoint_deploy.data.geometry import yaw_to_quaternion
from centerpoint_deploy.data.pointcloud import write_points_bin

#: nuScenes visibility levels: token -> (level, description); chosen from the visible fraction.
VISIBILITY_LEVELS = (("1", "v0-40"), ("2", "v40-60"), ("3", "v60-80"), ("4", "v80-100"))
ATTRIBUTE_NAMES = ("vehicle.moving", "vehicle.parked", "vehicle.stopped", "cycle.with_rider", "cycle.without_rider",
                   "pedestrian.moving", "pedestrian.standing")


@dataclass
class Scan:
    """One LiDAR sweep.

    Attributes:
        timestamp: microseconds.
        ego2global: 4x4 ego pose.
        points: ``[N, 5]`` float32 in the sensor frame (column 4 zero).
        is_key_frame: whether this sweep is a sample (annotated key frame).
    """

    timestamp: int
    ego2global: np.ndarray
    points: np.ndarray
    is_key_frame: bool


@dataclass
class KeyFrameAnnotations:
    """Annotations of one key frame, global frame.

    Attributes:
        instances: ``[M]`` instance index (into ``SceneRecording.instance_categories``).
        boxes: ``[M, 7]`` ``[x, y, z, l, w, h, yaw]``, z at the centre, global frame.
        velocities: ``[M, 3]`` m/s, global frame.
        num_lidar_pts: ``[M]`` points of the key frame inside each box.
        visibility: ``[M]`` visible fraction of each box's rays, 0..1.
        attributes: ``[M]`` attribute names.
    """

    instances: np.ndarray
    boxes: np.ndarray
    velocities: np.ndarray
    num_lidar_pts: np.ndarray
    visibility: np.ndarray
    attributes: list[str]


@dataclass
class SceneRecording:
    """Everything a T4 scene folder holds, before serialisation.

    ``key_frames`` has one entry per scan with ``is_key_frame``, in scan order.
    """

    name: str
    description: str
    channel: str
    lidar2ego: np.ndarray
    scans: list[Scan]
    key_frames: list[KeyFrameAnnotations]
    instance_categories: list[str]


def _tokens(scene: str, table: str, count: int) -> list[str]:
    return [hashlib.sha1(f"{scene}/{table}/{i}".encode()).hexdigest()[:32] for i in range(count)]


def _linked(records: list[dict[str, Any]], tokens: Sequence[str]) -> None:
    """Fill ``prev`` / ``next`` of records that form one chain in list order."""
    for i, record in enumerate(records):
        record["prev"] = tokens[i - 1] if i > 0 else ""
        record["next"] = tokens[i + 1] if i + 1 < len(tokens) else ""


def _pose(transform: np.ndarray) -> dict[str, list[float]]:
    """``translation`` and ``rotation`` (yaw-only quaternion) of a yaw-only 4x4 transform."""
    yaw = float(np.arctan2(transform[1, 0], transform[0, 0]))
    return {"translation": transform[:3, 3].tolist(), "rotation": yaw_to_quaternion(yaw).tolist()}


def write_scene(out_dir: str | Path, recording: SceneRecording, *, write_velocity: bool = True) -> Path:
    """Write ``recording`` to ``out_dir/<name>/``; returns the scene folder.

    Args:
        out_dir: dataset root.
        recording: scans, poses and annotations.
        write_velocity: add T4's ``velocity`` field to annotations (else readers fall back to
            the centre-difference rule).
    """
    name = recording.name
    scene_dir = Path(out_dir) / name
    data_dir = scene_dir / "data" / recording.channel
    data_dir.mkdir(parents=True, exist_ok=True)
    (scene_dir / "annotation").mkdir(parents=True, exist_ok=True)

    key_scan_index = [i for i, s in enumerate(recording.scans) if s.is_key_frame]
    sample_tokens = _tokens(name, "sample", len(key_scan_index))
    sd_tokens = _tokens(name, "sample_data", len(recording.scans))
    pose_tokens = _tokens(name, "ego_pose", len(recording.scans))
    scene_token, log_token, sensor_token, calib_token, map_token = (
        _tokens(name, t, 1)[0] for t in ("scene", "log", "sensor", "calib", "map"))
    categories = sorted(set(recording.instance_categories))
    category_tokens = dict(zip(categories, _tokens(name, "category", len(categories))))
    attribute_tokens = dict(zip(ATTRIBUTE_NAMES, _tokens(name, "attribute", len(ATTRIBUTE_NAMES))))

    samples = [{"token": t, "timestamp": recording.scans[i].timestamp, "scene_token": scene_token}
               for t, i in zip(sample_tokens, key_scan_index)]
    _linked(samples, sample_tokens)
    # each sweep belongs to the next key frame (or the last one, for sweeps after it)
    owner = np.minimum(np.searchsorted(key_scan_index, np.arange(len(recording.scans))), len(key_scan_index) - 1)
    sample_data, ego_poses = [], []
    for i, scan in enumerate(recording.scans):
        filename = f"data/{recording.channel}/{i:05d}.pcd.bin"
        write_points_bin(scene_dir / filename, scan.points)
        ego_poses.append({"token": pose_tokens[i], "timestamp": scan.timestamp, **_pose(scan.ego2global)})
        sample_data.append({
            "token": sd_tokens[i], "sample_token": sample_tokens[owner[i]], "ego_pose_token": pose_tokens[i],
            "calibrated_sensor_token": calib_token, "filename": filename, "fileformat": "pcd.bin",
            "width": 0, "height": 0, "timestamp": scan.timestamp, "is_key_frame": scan.is_key_frame,
            "is_valid": True,
        })
    _linked(sample_data, sd_tokens)

    annotations, ann_of_instance = _annotations(recording, sample_tokens, attribute_tokens, write_velocity)
    instance_tokens = _tokens(name, "instance", len(recording.instance_categories))
    instances = []
    for k, category in enumerate(recording.instance_categories):
        chain = ann_of_instance.get(k, [])
        if not chain:
            continue
        chain_tokens = [annotations[j]["token"] for j in chain]
        _linked([annotations[j] for j in chain], chain_tokens)
        instances.append({"token": instance_tokens[k], "category_token": category_tokens[category],
                          "nbr_annotations": len(chain), "first_annotation_token": chain_tokens[0],
                          "last_annotation_token": chain_tokens[-1]})
    for ann in annotations:
        ann["instance_token"] = instance_tokens[ann.pop("_instance")]

    tables: dict[str, list[dict[str, Any]]] = {
        "scene": [{"token": scene_token, "name": name, "description": recording.description, "log_token": log_token,
                   "nbr_samples": len(samples), "first_sample_token": sample_tokens[0],
                   "last_sample_token": sample_tokens[-1]}],
        "sample": samples,
        "sample_data": sample_data,
        "ego_pose": ego_poses,
        "calibrated_sensor": [{"token": calib_token, "sensor_token": sensor_token, **_pose(recording.lidar2ego),
                               "camera_intrinsic": [], "camera_distortion": []}],
        "sensor": [{"token": sensor_token, "channel": recording.channel, "modality": "lidar"}],
        "sample_annotation": annotations,
        "instance": instances,
        "category": [{"token": category_tokens[c], "name": c, "description": ""} for c in categories],
        "attribute": [{"token": t, "name": n, "description": ""} for n, t in attribute_tokens.items()],
        "visibility": [{"token": t, "level": level, "description": f"visibility of whole object is {level[1:]} %"}
                       for t, level in VISIBILITY_LEVELS],
        "log": [{"token": log_token, "logfile": "", "vehicle": "synthetic", "date_captured": "2024-01-01",
                 "location": "synthetic-road"}],
        "map": [{"token": map_token, "log_tokens": [log_token], "category": "semantic_prior", "filename": ""}],
        "object_ann": [],
        "surface_ann": [],
    }
    for table, records in tables.items():
        (scene_dir / "annotation" / f"{table}.json").write_text(json.dumps(records, indent=1))
    return scene_dir


def _annotations(recording: SceneRecording, sample_tokens: Sequence[str], attribute_tokens: dict[str, str],
                 write_velocity: bool) -> tuple[list[dict[str, Any]], dict[int, list[int]]]:
    """sample_annotation records (instance index in ``_instance``) and each instance's records in time order."""
    total = sum(len(k.instances) for k in recording.key_frames)
    tokens = _tokens(recording.name, "sample_annotation", total)
    records: list[dict[str, Any]] = []
    of_instance: dict[int, list[int]] = {}
    for sample_token, frame in zip(sample_tokens, recording.key_frames):
        quats = yaw_to_quaternion(frame.boxes[:, 6]).tolist()
        levels = np.clip(np.searchsorted([0.4, 0.6, 0.8], frame.visibility, side="right"), 0, 3)
        for m, instance in enumerate(frame.instances.tolist()):
            box = frame.boxes[m]
            record = {
                "token": tokens[len(records)], "sample_token": sample_token, "_instance": instance,
                "visibility_token": VISIBILITY_LEVELS[levels[m]][0],
                "attribute_tokens": [attribute_tokens[frame.attributes[m]]],
                "translation": box[:3].tolist(), "size": [float(box[4]), float(box[3]), float(box[5])],
                "rotation": quats[m], "num_lidar_pts": int(frame.num_lidar_pts[m]), "num_radar_pts": 0,
            }
            if write_velocity:
                record["velocity"] = frame.velocities[m].tolist()
            of_instance.setdefault(instance, []).append(len(records))
            records.append(record)
    return records, of_instance
