from __future__ import annotations


import pytest
from typer.testing import CliRunner

from centerpoint_deploy.cli.app import app
from centerpoint_deploy.data import open_dataset, scene_dirs
from centerpoint_deploy.data.sample import SampleSpec, sample_dir
from centerpoint_deploy.data.splits import make_split, read_split, write_split
from centerpoint_deploy.data.synthetic import LidarConfig
from centerpoint_deploy.errors import DatasetError
from tests.data.conftest import CLASSES


def test_split_files(synth_root, tmp_path):
    split = write_split(tmp_path / "split.yaml", {"train": ["synth-11-000"], "val": ["synth-11-001"]})
    assert [d.name for d in scene_dirs(f"{split}:val", data_root=synth_root)] == ["synth-11-001"]
    frames = open_dataset(f"{split}:train", class_names=CLASSES, data_root=synth_root)
    assert {frames[i].scene for i in range(len(frames))} == {"synth-11-000"}
    with pytest.raises(DatasetError, match=r"holds splits \['train', 'val'\]; name one"):
        read_split(split)
    with pytest.raises(DatasetError, match="has no split 'test'"):
        read_split(split, "test")
    txt = tmp_path / "scenes.txt"
    txt.write_text("# AWML style: id and version\nscene-a 2\n\nscene-b\n")
    assert read_split(txt) == ["scene-a/2", "scene-b"]
    with pytest.raises(DatasetError, match="not found under"):
        scene_dirs(txt)


def test_make_split():
    names = ["a", "b", "c", "d"]
    split = make_split(names, val_fraction=0.5, seed=1)
    assert sorted(split["train"] + split["val"]) == names and len(split["val"]) == 2
    assert split == make_split(names, val_fraction=0.5, seed=1)
    assert make_split(names, val_scenes=["c"]) == {"train": ["a", "b", "d"], "val": ["c"]}
    assert make_split(["a"], val_fraction=1.0)["val"] == ["a"]
    assert make_split(["a", "b"], val_fraction=1.0)["train"] != []
    with pytest.raises(DatasetError, match=r"val scenes \['z'\]"):
        make_split(names, val_scenes=["z"])


def test_sample_dir_generated_once(tmp_path):
    spec = SampleSpec(seed=3, num_scenes=1, frames_per_scene=2, sensor=LidarConfig(beams=8, columns=90))
    first = sample_dir(spec, cache_root=tmp_path)
    assert first.name == f"sample-3-{spec.version}" and (first / "COMPLETE").is_file()
    stamp = (first / "synth-3-000" / "annotation" / "sample.json").stat().st_mtime_ns
    assert sample_dir(spec, cache_root=tmp_path) == first
    assert (first / "synth-3-000" / "annotation" / "sample.json").stat().st_mtime_ns == stamp
    assert len(open_dataset(first, class_names=CLASSES)) == 2
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no staging folder left behind


def test_synth_cli(tmp_path):
    result = CliRunner().invoke(app, ["synth", str(tmp_path), "--scenes", "2", "--frames", "2", "--seed", "4",
                                      "--beams", "8", "--columns", "90", "--val-scene", "synth-4-001"])
    assert result.exit_code == 0, result.output
    assert read_split(tmp_path / "split.yaml", "val") == ["synth-4-001"]
    assert len(open_dataset(f"{tmp_path / 'split.yaml'}:train", class_names=CLASSES)) == 2
