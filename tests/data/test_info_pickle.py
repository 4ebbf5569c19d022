"""The info-pickle reader agrees with the T4 reader on the same frames; unsafe pickles are refused."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from centerpoint_deploy.data import open_dataset
from centerpoint_deploy.data.info_pickle import read_info_pickle
from centerpoint_deploy.errors import DatasetError
from tests.data.conftest import CLASSES

# metainfo class order differs from ours on purpose: labels must be remapped by name
PICKLE_CLASSES = ["pedestrian", "bus", "car", "truck", "bicycle", "barrier"]


def write_info_pickle(t4_frames, path: Path, data_root: Path, bottom_z: bool = False) -> Path:
    """An mmdet3d v1.x info pickle of T4 frames (what AWML's converter writes)."""
    data_list = []
    for record in t4_frames.records:
        sweeps = []
        for s in record.sweeps:
            rot, trans = s.sweep2key[:3, :3], s.sweep2key[:3, 3]
            lidar2sensor = np.eye(4)
            lidar2sensor[:3, :3] = rot.T
            lidar2sensor[:3, 3] = -rot.T @ trans
            sweeps.append({"lidar_points": {"lidar_path": os.path.relpath(s.lidar_path, data_root),
                                            "lidar2sensor": lidar2sensor.astype(np.float32).tolist()},
                           "timestamp": s.timestamp / 1e6})
        gt = record.gt
        boxes = gt.boxes.copy()
        if bottom_z:
            boxes[:, 2] -= 0.5 * boxes[:, 5]
        instances = [{"bbox_3d": boxes[m, :7].tolist(), "velocity": boxes[m, 7:9].tolist(),
                      "bbox_label_3d": PICKLE_CLASSES.index(CLASSES[gt.labels[m]]),
                      "num_lidar_pts": int(gt.num_lidar_pts[m]), "bbox_3d_isvalid": bool(gt.num_lidar_pts[m] > 0)}
                     for m in range(len(gt))]
        instances.append({"bbox_3d": [0, 0, 0, 1, 1, 1, 0], "velocity": [0, 0], "bbox_label_3d": 5,
                          "num_lidar_pts": 3})  # a class we do not detect: dropped
        data_list.append({"token": record.token, "scene_token": record.scene, "timestamp": record.timestamp / 1e6,
                          "ego2global": record.ego2global, "lidar_points": {
                              "lidar_path": os.path.relpath(record.lidar_path, data_root), "num_pts_feats": 5,
                              "lidar2ego": record.lidar2ego},
                          "lidar_sweeps": sweeps, "instances": instances})
    with path.open("wb") as f:
        pickle.dump({"metainfo": {"classes": PICKLE_CLASSES, "version": "t4"}, "data_list": data_list}, f, protocol=4)
    return path


@pytest.fixture(scope="module")
def t4(synth_root):
    return open_dataset(synth_root, class_names=CLASSES, sweeps_num=1)


def test_pickle_and_t4_readers_agree(t4, synth_root, tmp_path):
    pkl = write_info_pickle(t4, tmp_path / "infos_val.pkl", synth_root)
    infos = open_dataset(pkl, class_names=CLASSES, sweeps_num=1, data_root=synth_root)
    assert len(infos) == len(t4)
    for index in (0, 3, 6):
        a, b = t4[index], infos[index]
        assert (a.token, a.scene, a.timestamp) == (b.token, b.scene, b.timestamp)
        np.testing.assert_allclose(a.points, b.points, atol=2e-5)  # float32-stored lidar2sensor
        np.testing.assert_array_equal(a.gt.labels, b.gt.labels)
        np.testing.assert_allclose(a.gt.boxes, b.gt.boxes, atol=1e-6)
        np.testing.assert_array_equal(a.gt.num_lidar_pts, b.gt.num_lidar_pts)


def test_bottom_z_boxes_are_moved_to_centre(t4, synth_root, tmp_path):
    pkl = write_info_pickle(t4, tmp_path / "kitti_style.pkl", synth_root, bottom_z=True)
    records = read_info_pickle(pkl, class_names=CLASSES, max_sweeps=1, data_root=synth_root, box_origin_z=0.0)
    np.testing.assert_allclose(records[2].gt.boxes, t4.records[2].gt.boxes, atol=1e-5)


def test_sweep_transform_from_ego_poses(t4, synth_root, tmp_path):
    """Pickles without lidar2sensor: the transform is composed from lidar2ego / ego2global."""
    record = t4.records[1]
    sweep = record.sweeps[0]
    sweep_lidar2global = record.ego2global @ record.lidar2ego @ sweep.sweep2key
    item = {"token": "x", "timestamp": record.timestamp / 1e6, "ego2global": record.ego2global,
            "lidar_points": {"lidar_path": record.lidar_path, "lidar2ego": record.lidar2ego},
            "lidar_sweeps": [{"lidar_points": {"lidar_path": sweep.lidar_path, "lidar2ego": np.eye(4)},
                              "ego2global": sweep_lidar2global, "timestamp": sweep.timestamp / 1e6}]}
    path = tmp_path / "composed.pkl"
    path.write_bytes(pickle.dumps({"metainfo": {"classes": list(CLASSES)}, "data_list": [item]}))
    records = read_info_pickle(path, class_names=CLASSES, data_root=synth_root)  # absolute paths inside it
    np.testing.assert_allclose(records[0].sweeps[0].sweep2key, sweep.sweep2key, atol=1e-9)
    assert records[0].gt is None


class Payload:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


@pytest.mark.parametrize("obj, name", [
    (Payload(), "system"),
    ({"data_list": [], "metainfo": {"classes": []}, "x": Path("/tmp")}, "PosixPath"),
])
def test_forbidden_classes_are_refused(tmp_path, obj, name):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(obj))
    with pytest.raises(DatasetError, match=rf"class \S*{name}.*not allowed"):
        read_info_pickle(path, class_names=CLASSES)


def test_numpy_pickled_with_every_protocol_is_accepted(tmp_path):
    data = {"metainfo": {"classes": np.array(["car"])}, "data_list": [], "extra": (np.float32(1.5), {1, 2})}
    for protocol in (2, 3, 4, 5):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps(data, protocol=protocol))
        assert read_info_pickle(path, class_names=CLASSES) == []


@pytest.mark.parametrize("content, message", [
    (b"not a pickle", "not a readable pickle"),
    (pickle.dumps([1, 2]), "expected an mmdet3d v1.x info dict"),
    (pickle.dumps({"data_list": []}), "'metainfo' must be a dict with 'classes'"),
    (pickle.dumps({"data_list": [], "metainfo": {"classes": "car"}}), "metainfo.classes = 'car' is invalid"),
    (pickle.dumps({"data_list": [], "metainfo": {"categories": {"car": 0, "bus": 2}}}), r"labels \[0, 2\] are invalid"),
    (pickle.dumps({"data_list": [{"timestamp": 1e300, "lidar_points": {"lidar_path": "x"}}],
                   "metainfo": {"classes": []}}), r"data_list\[0\].timestamp = 1e\+300 is invalid"),
    (pickle.dumps({"data_list": [{"timestamp": float("nan"), "lidar_points": {"lidar_path": "x"}}],
                   "metainfo": {"classes": []}}), r"data_list\[0\].timestamp = nan is invalid"),
    (pickle.dumps({"data_list": [5], "metainfo": {"classes": []}}), r"data_list\[0\] is malformed"),
    (pickle.dumps({"data_list": [{"timestamp": 1.0}], "metainfo": {"classes": []}}), r"data_list\[0\] is malformed"),
])
def test_malformed_pickles(tmp_path, content, message):
    path = tmp_path / "bad.pkl"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=message):
        read_info_pickle(path, class_names=CLASSES)


def test_missing_point_file_named(tmp_path):
    item = {"token": "x", "timestamp": 1.0, "lidar_points": {"lidar_path": "nowhere/0.pcd.bin"}}
    path = tmp_path / "missing.pkl"
    path.write_bytes(pickle.dumps({"metainfo": {"classes": ["car"]}, "data_list": [item]}))
    with pytest.raises(DatasetError, match="nowhere/0.pcd.bin does not exist"):
        read_info_pickle(path, class_names=CLASSES)


def test_bare_file_names_resolve_under_the_nuscenes_prefixes(tmp_path):
    """mmdet3d v1.x nuScenes infos store bare names; the files live in samples/ and sweeps/."""
    key = tmp_path / "samples" / "LIDAR_TOP" / "k__LIDAR_TOP__1.pcd.bin"
    key.parent.mkdir(parents=True)
    np.arange(10, dtype=np.float32).tofile(key)
    item = {"token": "x", "timestamp": 1.0, "lidar_points": {"lidar_path": key.name}}
    path = tmp_path / "nus.pkl"
    path.write_bytes(pickle.dumps({"metainfo": {"classes": ["car"]}, "data_list": [item]}))
    frame = open_dataset(path, class_names=CLASSES)[0]
    assert frame.lidar_path == str(key) and frame.points[1, 0] == 5.0  # the key frame comes first
