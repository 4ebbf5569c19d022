"""A generated T4 scene holds every table of the nuScenes schema: the real nuscenes-devkit
opens it and reads a sample, and its boxes agree with ours."""

from __future__ import annotations

import json

import numpy as np
import pytest

from centerpoint_deploy.data import open_dataset
from tests.data.conftest import CLASSES

nuscenes = pytest.importorskip("nuscenes.nuscenes", reason="nuscenes-devkit is a test dependency")

NUSCENES_TABLES = ("category", "attribute", "visibility", "instance", "sensor", "calibrated_sensor", "ego_pose", "log",
                   "scene", "sample", "sample_data", "sample_annotation", "map")


def test_every_schema_table_is_written(synth_root):
    annotation = synth_root / "synth-11-000" / "annotation"
    for table in (*NUSCENES_TABLES, "object_ann", "surface_ann"):
        assert isinstance(json.loads((annotation / f"{table}.json").read_text()), list), table


def test_nuscenes_devkit_opens_a_generated_scene(synth_root):
    scene_dir = synth_root / "synth-11-000"
    nusc = nuscenes.NuScenes(version="annotation", dataroot=str(scene_dir), verbose=False)
    assert len(nusc.scene) == 1 and nusc.log[0]["map_token"] == nusc.map[0]["token"]
    ours = open_dataset(scene_dir, class_names=CLASSES, sweeps_num=0)
    frame = ours[1]
    sample = nusc.get("sample", frame.token)
    lidar_token = sample["data"]["LIDAR_CONCAT"]
    path, boxes, _ = nusc.get_sample_data(lidar_token)  # boxes in the sensor frame
    assert path == frame.lidar_path
    points = nuscenes.LidarPointCloud.from_file(path).points.T
    np.testing.assert_array_equal(points[:, :3], frame.points[:, :3])
    by_instance = {nusc.get("sample_annotation", b.token)["instance_token"]: b for b in boxes}
    for m, instance in enumerate(frame.gt.instance_tokens):
        box = by_instance[instance]
        np.testing.assert_allclose(box.center, frame.gt.boxes[m, :3], atol=1e-4)
        np.testing.assert_allclose(box.wlh[[1, 0, 2]], frame.gt.boxes[m, 3:6], atol=1e-5)
    assert len(frame.gt) > 0
