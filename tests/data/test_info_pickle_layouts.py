"""mmdet3d's own v1.x info pickles (nuScenes and KITTI layouts, ``metainfo.categories``,
``info_version`` 1.1) are read; their paths stay inside the data root."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest

from centerpoint_deploy.data import open_dataset
from centerpoint_deploy.data.info_pickle import read_info_pickle
from centerpoint_deploy.errors import DatasetError

NUS_CLASSES = ("car", "truck", "trailer", "bus", "construction_vehicle", "bicycle", "motorcycle", "pedestrian",
               "traffic_cone", "barrier")
CLOUD = np.arange(20, dtype=np.float32).reshape(4, 5)


def dump(path: Path, content: dict) -> Path:
    path.write_bytes(pickle.dumps(content, protocol=4))
    return path


def nuscenes_pickle(root: Path) -> Path:
    """What mmdet3d 1.x ``create_data.py nuscenes`` / ``update_infos_to_v2`` writes."""
    key = root / "samples" / "LIDAR_TOP" / "n015__LIDAR_TOP__1532402927647951.pcd.bin"
    sweep = root / "sweeps" / "LIDAR_TOP" / "n015__LIDAR_TOP__1532402927597951.pcd.bin"
    for f in (key, sweep):
        f.parent.mkdir(parents=True, exist_ok=True)
        CLOUD.tofile(f)
    lidar2sensor = np.eye(4)
    lidar2sensor[:3, 3] = [-0.5, 0.0, 0.0]  # the sweep sensor sat 0.5 m behind the key one
    item = {
        "sample_idx": 0, "token": "ca9a282c9e77460f8360f564131a8af5", "timestamp": 1532402927.647951,
        "ego2global": np.eye(4).tolist(),
        "lidar_points": {"num_pts_feats": 5, "lidar_path": key.name, "lidar2ego": np.eye(4).tolist()},
        "lidar_sweeps": [{"timestamp": 1532402927.597951, "ego2global": np.eye(4).tolist(),
                          "sample_data_token": "s0",
                          "lidar_points": {"lidar2ego": np.eye(4).tolist(),
                                           "lidar2sensor": lidar2sensor.astype(np.float32).tolist(),
                                           "lidar_path": f"./data/nuscenes/sweeps/LIDAR_TOP/{sweep.name}"}}],
        "instances": [
            {"bbox_3d": [1.0, 2.0, 0.5, 4.0, 2.0, 1.5, 0.3], "bbox_label": 0, "bbox_label_3d": 0,
             "velocity": [1.0, -1.0], "num_lidar_pts": 12, "num_radar_pts": 0, "bbox_3d_isvalid": True},
            {"bbox_3d": [5.0, 0.0, 0.2, 0.5, 0.5, 1.7, 0.0], "bbox_label": 7, "bbox_label_3d": 7,
             "velocity": [float("nan"), float("nan")], "num_lidar_pts": 3, "bbox_3d_isvalid": True},
            {"bbox_3d": [9.0, 0.0, 0.2, 0.5, 0.5, 1.0, 0.0], "bbox_label": -1, "bbox_label_3d": -1,
             "velocity": [0.0, 0.0], "num_lidar_pts": 1, "bbox_3d_isvalid": True},
        ],
    }
    categories = {name: i for i, name in enumerate(NUS_CLASSES)} | {"animal": -1}
    metainfo = {"categories": categories, "dataset": "nuscenes", "version": "v1.0-mini", "info_version": "1.1"}
    return dump(root / "nuscenes_infos_val.pkl", {"metainfo": metainfo, "data_list": [item]})


def test_mmdet3d_nuscenes_v1_pickle(tmp_path):
    frames = open_dataset(nuscenes_pickle(tmp_path), class_names=("car", "pedestrian"), category_mapping="identity",
                          sweeps_num=1, remove_close_radius=None)
    assert len(frames) == 1
    frame = frames[0]
    assert frame.token == "ca9a282c9e77460f8360f564131a8af5" and frame.timestamp == 1532402927647951
    assert frame.lidar_path == str(tmp_path / "samples" / "LIDAR_TOP" / "n015__LIDAR_TOP__1532402927647951.pcd.bin")
    assert frame.points.shape == (8, 5)
    np.testing.assert_allclose(frame.points[4:, 0], CLOUD[:, 0] + 0.5)  # sweep moved into the key frame
    np.testing.assert_allclose(frame.points[4:, 4], 0.05, atol=1e-6)    # time lag 50 ms
    assert frame.gt.labels.tolist() == [0, 1]                            # car, pedestrian; ignored label dropped
    np.testing.assert_allclose(frame.gt.boxes[0], [1, 2, 0.5, 4, 2, 1.5, 0.3, 1, -1], rtol=1e-6)
    assert np.isnan(frame.gt.boxes[1, 7:]).all()


def kitti_pickle(root: Path, lidar_box: np.ndarray, lidar2cam: np.ndarray) -> Path:
    """What mmdet3d 1.x ``create_data.py kitti`` writes: camera boxes, no timestamp, bare names."""
    velodyne = root / "training" / "velodyne_reduced" / "000008.bin"
    velodyne.parent.mkdir(parents=True)
    CLOUD[:, :4].copy().tofile(velodyne)
    x, y, z, length, width, height, yaw = lidar_box
    bottom = lidar2cam @ np.array([x, y, z - height / 2, 1.0])
    camera_box = [*bottom[:3], length, height, width, -yaw - math.pi / 2]
    item = {
        "sample_idx": 8,
        "images": {"CAM2": {"img_path": "000008.png", "lidar2cam": lidar2cam.tolist(),
                            "cam2img": np.eye(4).tolist()}},
        "lidar_points": {"num_pts_feats": 4, "lidar_path": "000008.bin", "Tr_velo_to_cam": lidar2cam.tolist()},
        "instances": [{"bbox": [0, 0, 10, 10], "bbox_label": 2, "bbox_3d": camera_box, "bbox_label_3d": 2,
                       "depth": 10.0, "num_lidar_pts": 40, "difficulty": 0, "truncated": 0.0, "occluded": 0}],
    }
    categories = {"Pedestrian": 0, "Cyclist": 1, "Car": 2, "Van": 3, "Truck": 4, "Person_sitting": 5, "Tram": 6,
                  "Misc": 7, "DontCare": -1}
    return dump(root / "kitti_infos_val.pkl",
                {"metainfo": {"categories": categories, "dataset": "kitti", "info_version": "1.1"}, "data_list": [item]})


def test_mmdet3d_kitti_v1_pickle_converts_camera_boxes(tmp_path):
    lidar2cam = np.array([[0.0, -1.0, 0.0, 0.02], [0.0, 0.0, -1.0, -0.08], [1.0, 0.0, 0.0, -0.27], [0, 0, 0, 1]])
    yaw = 0.4
    lidar2cam[:3, :3] = lidar2cam[:3, :3] @ np.array([[math.cos(0.01), -math.sin(0.01), 0],
                                                      [math.sin(0.01), math.cos(0.01), 0], [0, 0, 1]])
    box = np.array([12.0, -3.0, -0.8, 3.9, 1.6, 1.5, yaw])
    frames = open_dataset(kitti_pickle(tmp_path, box, lidar2cam), class_names=("Car",),
                          category_mapping="identity", load_dim=4, sweeps_num=0)
    frame = frames[0]
    assert frame.token == "8" and frame.timestamp == 0 and frame.points.shape == (4, 5)
    assert frame.gt.labels.tolist() == [0]
    got = frame.gt.boxes[0]
    np.testing.assert_allclose(got[:6], box[:6], atol=1e-5)
    # mmdet3d's -ry - pi/2 ignores the 0.01 rad rotation of lidar2cam about z: so do we
    assert math.isclose(got[6], yaw, abs_tol=1e-6)


def test_categories_and_classes_agree(tmp_path):
    """A v1.x pickle with 'categories' maps labels exactly like one with 'classes'."""
    nus = read_info_pickle(nuscenes_pickle(tmp_path), class_names=("pedestrian", "car"), category_mapping="identity")
    assert nus[0].gt.labels.tolist() == [1, 0]


@pytest.mark.parametrize("lidar_path", ["../outside.bin", "/etc/hostname", "a/../../outside.bin"])
def test_pickle_paths_leaving_the_data_root_are_refused(tmp_path, lidar_path):
    root = tmp_path / "root"
    root.mkdir()
    CLOUD.tofile(tmp_path / "outside.bin")
    item = {"token": "x", "timestamp": 1.0, "lidar_points": {"lidar_path": lidar_path}}
    pkl = dump(root / "infos.pkl", {"metainfo": {"classes": ["car"]}, "data_list": [item]})
    with pytest.raises(DatasetError, match=rf"data_list\[0\] field 'lidar_points.lidar_path': path '{lidar_path}' "
                                           "is outside the dataset root"):
        read_info_pickle(pkl, class_names=("car",))


def test_explicit_data_root_admits_absolute_paths_inside_it(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    CLOUD.tofile(data / "k.bin")
    item = {"token": "x", "timestamp": 1.0, "lidar_points": {"lidar_path": str(data / "k.bin")}}
    (tmp_path / "infos").mkdir()
    pkl = dump(tmp_path / "infos" / "infos.pkl", {"metainfo": {"classes": ["car"]}, "data_list": [item]})
    with pytest.raises(DatasetError, match="outside the dataset root"):
        read_info_pickle(pkl, class_names=("car",))  # default root: the pickle's folder
    assert read_info_pickle(pkl, class_names=("car",), data_root=data)[0].lidar_path == str(data / "k.bin")


def test_sweep_after_its_key_frame_is_refused(tmp_path):
    CLOUD.tofile(tmp_path / "k.bin")
    item = {"token": "x", "timestamp": 1.0, "lidar_points": {"lidar_path": "k.bin"},
            "lidar_sweeps": [{"timestamp": 1.5, "lidar_points": {"lidar_path": "k.bin", "lidar2sensor": np.eye(4)}}]}
    pkl = dump(tmp_path / "infos.pkl", {"metainfo": {"classes": ["car"]}, "data_list": [item]})
    with pytest.raises(DatasetError, match=r"lidar_sweeps\[0\].timestamp = 1.5 is after its key frame's 1.0"):
        read_info_pickle(pkl, class_names=("car",))


def test_overflowing_box_values_are_refused(tmp_path):
    CLOUD.tofile(tmp_path / "k.bin")
    item = {"token": "x", "timestamp": 1.0, "lidar_points": {"lidar_path": "k.bin"},
            "instances": [{"bbox_3d": [1e39, 0, 0, 1, 1, 1, 0], "bbox_label_3d": 0}]}
    pkl = dump(tmp_path / "infos.pkl", {"metainfo": {"classes": ["car"]}, "data_list": [item]})
    with pytest.raises(DatasetError, match=r"data_list\[0\] is malformed .*bbox_3d values must be finite"):
        read_info_pickle(pkl, class_names=("car",))
