"""T4 records cannot read outside the scene, link sweeps forward in time or point at missing
samples; a dataset iterates cleanly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from centerpoint_deploy.data import open_dataset
from centerpoint_deploy.data.paths import contained_path
from centerpoint_deploy.errors import DatasetError
from tests.data.conftest import CLASSES


@pytest.fixture
def scene(synth_root, tmp_path) -> Path:
    return Path(shutil.copytree(synth_root / "synth-11-000", tmp_path / "root" / "scene"))


def edit_table(scene: Path, table: str, edit) -> list[dict]:
    path = scene / "annotation" / f"{table}.json"
    records = json.loads(path.read_text())
    edit(records)
    path.write_text(json.dumps(records))
    return records


@pytest.mark.parametrize("name", ["../outside.bin", "data/../../outside.bin", "/etc/passwd", ""])
def test_point_file_names_leaving_the_scene_are_refused(scene, name):
    outside = scene.parent / "outside.bin"
    shutil.copy(scene / "data" / "LIDAR_CONCAT" / "00001.pcd.bin", outside)  # it exists: still refused
    records = edit_table(scene, "sample_data", lambda recs: recs[1].update(filename=name))
    token = records[1]["token"]
    with pytest.raises(DatasetError, match=rf"sample_data '{token}' field 'filename': path '{name}'"):
        open_dataset(scene, class_names=CLASSES, sweeps_num=1)


def test_contained_path_accepts_inner_absolute_and_normalised_names(tmp_path):
    assert contained_path(tmp_path, "a/../b.bin", "r") == tmp_path / "b.bin"
    assert contained_path(tmp_path, str(tmp_path / "c" / "d.bin"), "r") == tmp_path / "c" / "d.bin"
    with pytest.raises(DatasetError, match="outside the dataset root"):
        contained_path(tmp_path / "c", str(tmp_path / "cx" / "d.bin"), "r")  # a sibling sharing a prefix


def test_split_entries_leaving_the_root_are_refused(scene, tmp_path):
    split = scene.parent / "split.yaml"
    split.write_text("val: [scene, ../../elsewhere]\n")
    with pytest.raises(DatasetError, match=r"split file .*split\.yaml: entry: path '\.\./\.\./elsewhere' is outside"):
        open_dataset(f"{split}:val", class_names=CLASSES)


def test_prev_cycle_is_refused(scene):
    def make_cycle(recs):  # the first sweep's prev points at a later sweep
        recs[0]["prev"] = recs[2]["token"]
    records = edit_table(scene, "sample_data", make_cycle)
    with pytest.raises(DatasetError, match=rf"sample_data '{records[0]['token']}' field 'prev' = .* not before its "
                                           r"own .*a cycle or a future sweep is refused"):
        open_dataset(scene, class_names=CLASSES, sweeps_num=10)


def test_prev_pointing_at_the_future_is_refused(scene):
    records = json.loads((scene / "annotation" / "sample_data.json").read_text())
    key = next(i for i, r in enumerate(records) if r["is_key_frame"] and r["prev"])
    edit_table(scene, "sample_data", lambda recs: recs[key].update(prev=recs[-1]["token"]))
    with pytest.raises(DatasetError, match="prev must name an earlier sweep"):
        open_dataset(scene, class_names=CLASSES, sweeps_num=1)


def test_annotation_of_a_missing_sample_is_a_dataset_error(scene):
    records = edit_table(scene, "sample_annotation", lambda recs: recs[2].update(sample_token="gone"))
    with pytest.raises(DatasetError, match=rf"sample_annotation '{records[2]['token']}' field 'sample_token' = "
                                           r"'gone' is not in table 'sample'"):
        open_dataset(scene, class_names=CLASSES)


def test_empty_sample_table_is_a_dataset_error(scene):
    edit_table(scene, "sample", lambda recs: recs.clear())
    with pytest.raises(DatasetError, match="table 'sample' is empty"):
        open_dataset(scene, class_names=CLASSES)


def test_non_numeric_or_overflowing_timestamp_is_a_dataset_error(scene):
    edit_table(scene, "sample", lambda recs: recs[0].update(timestamp=float("inf")))
    with pytest.raises(DatasetError, match="malformed annotation values"):
        open_dataset(scene, class_names=CLASSES)


def test_iteration_stops_after_the_last_frame(synth_root):
    frames = open_dataset(synth_root, class_names=CLASSES, sweeps_num=0)
    tokens = [frame.token for frame in frames]
    assert tokens == frames.tokens and len(tokens) == len(frames) == 8
    assert [f.token for f in frames[2:4]] == tokens[2:4]
    assert list(reversed(frames))[0].token == tokens[-1]


def test_sweep_later_than_its_key_sample_is_refused(scene):
    records = json.loads((scene / "annotation" / "sample_data.json").read_text())
    key = next(r for r in records if r["is_key_frame"] and r["prev"])
    edit_table(scene, "sample", lambda recs: next(s for s in recs if s["token"] == key["sample_token"]).update(
        timestamp=key["timestamp"] - 10 ** 6))
    with pytest.raises(DatasetError, match=r"field 'timestamp' = \d+ is after its key frame's sample"):
        open_dataset(scene, class_names=CLASSES, sweeps_num=1)
