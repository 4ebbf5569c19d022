"""Broken T4 scenes fail with a DatasetError / PointCloudError naming the path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from centerpoint_deploy.data import open_dataset
from centerpoint_deploy.errors import DatasetError, PointCloudError
from tests.data.conftest import CLASSES


@pytest.fixture
def scene(synth_root, tmp_path) -> Path:
    """A private copy of one synthetic scene to break."""
    return Path(shutil.copytree(synth_root / "synth-11-000", tmp_path / "scene"))


def edit_table(scene: Path, table: str, edit) -> None:
    path = scene / "annotation" / f"{table}.json"
    records = json.loads(path.read_text())
    edit(records)
    path.write_text(json.dumps(records))


def test_malformed_json(scene):
    (scene / "annotation" / "sample.json").write_text('[{"token": "a",')
    with pytest.raises(DatasetError, match=r"sample\.json: malformed JSON"):
        open_dataset(scene, class_names=CLASSES)


def test_missing_table(scene):
    (scene / "annotation" / "ego_pose.json").unlink()
    with pytest.raises(DatasetError, match=r"table file .*ego_pose\.json is missing"):
        open_dataset(scene, class_names=CLASSES)


def test_record_without_required_field(scene):
    edit_table(scene, "sample_annotation", lambda recs: recs[3].pop("size"))
    with pytest.raises(DatasetError, match=r"sample_annotation\.json: record 3 .* lacks field\(s\) size"):
        open_dataset(scene, class_names=CLASSES)


def test_dangling_token(scene):
    edit_table(scene, "sample_data", lambda recs: recs[0].update(ego_pose_token="nope"))
    with pytest.raises(DatasetError, match="token 'nope' is not in table 'ego_pose'"):
        open_dataset(scene, class_names=CLASSES)


def test_missing_point_file(scene):
    (scene / "data" / "LIDAR_CONCAT" / "00003.pcd.bin").unlink()
    with pytest.raises(DatasetError, match=r"point file .*00003\.pcd\.bin .* is missing"):
        open_dataset(scene, class_names=CLASSES)


def test_truncated_point_file_fails_on_load(scene):
    path = scene / "data" / "LIDAR_CONCAT" / "00001.pcd.bin"
    path.write_bytes(path.read_bytes()[:-6])
    frames = open_dataset(scene, class_names=CLASSES, sweeps_num=0)
    with pytest.raises(PointCloudError, match=r"00001\.pcd\.bin: truncated"):
        frames[0]


def test_not_a_dataset(tmp_path):
    with pytest.raises(DatasetError, match="is not a dataset"):
        open_dataset(tmp_path, class_names=CLASSES)
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(tmp_path / "nothing", class_names=CLASSES)


def test_index_out_of_range(synth_root):
    frames = open_dataset(synth_root, class_names=CLASSES)
    with pytest.raises(DatasetError, match="out of range for a dataset of 8 frames"):
        frames[8]


def test_unmapped_categories_dropped_and_mappings(synth_root):
    j6 = open_dataset(synth_root, class_names=CLASSES)
    only_cars = open_dataset(synth_root, class_names=("car",))
    frame_j6, frame_cars = j6.records[0].gt, only_cars.records[0].gt
    assert len(frame_cars) == int((frame_j6.labels == 0).sum()) and set(frame_cars.labels.tolist()) == {0}
    nus = open_dataset(synth_root, class_names=CLASSES, category_mapping="nuscenes")
    # nuScenes names pedestrians human.pedestrian.*: our pedestrian.adult is not mapped there
    assert CLASSES.index("pedestrian") not in nus.records[0].gt.labels.tolist()
    with pytest.raises(DatasetError, match="unknown category mapping 'kitti'"):
        open_dataset(synth_root, class_names=CLASSES, category_mapping="kitti")


def test_versioned_scene_folder(scene, tmp_path):
    versioned = tmp_path / "root" / "scene-a" / "2"
    shutil.copytree(scene, versioned)
    frames = open_dataset(tmp_path / "root", class_names=CLASSES)
    assert len(frames) == 4 and frames.records[0].lidar_path.startswith(str(versioned))
