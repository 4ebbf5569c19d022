"""The AST reader of mmengine-style Python configs: evaluation, _base_ merging, unresolved values."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from centerpoint_deploy.config.pyconfig import Unresolved, merge_config, read_python_config
from centerpoint_deploy.errors import ConfigError

FIXTURES = Path(__file__).parent / "fixtures"
LEAF = FIXTURES / "projects/CenterPoint/configs/t4dataset/Centerpoint/second_secfpn_4xb16_121m_j6gen2_base.py"
CLASSES = ["car", "truck", "bus", "bicycle", "pedestrian"]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_expressions_are_evaluated(tmp_path: Path) -> None:
    cfg = read_python_config(write(tmp_path, "c.py", """
a = 2
b = [a * 3, a ** 2, 7 // a, -a, 1 / 4]
c = dict(x=a, y=(1, 2), **{"z": "s"})
d = [i * i for i in range(4) if i % 2]
e = {k: v for k, v in zip(["p", "q"], [1, 2])}
f = f"run{a:03d}_" + str(len(b))
g = b[1:3] + [max(b), sum(d)]
h = "yes" if a > 1 and a in [1, 2] else "no"
lst = [1]
lst.append(2)
lst += [3]
lst[0] = 10
"""))
    assert cfg["b"] == [6, 4, 3, -2, 0.25]
    assert cfg["c"] == {"x": 2, "y": (1, 2), "z": "s"}
    assert cfg["d"] == [1, 9]
    assert cfg["e"] == {"p": 1, "q": 2}
    assert cfg["f"] == "run002_5"
    assert cfg["g"] == [4, 3, 6, 10]
    assert cfg["h"] == "yes"
    assert cfg["lst"] == [10, 2, 3]


def test_unevaluable_values_stay_local(tmp_path: Path) -> None:
    cfg = read_python_config(write(tmp_path, "c.py", """
import numpy as np
from my_project.transforms import make_pipeline
pipeline = [dict(type="A", fn=make_pipeline()), dict(type="B", k=np.pi)]
model = dict(width=64, depth=np.int64(3))
copy = model["width"] * 2
for i in range(3):
    model["width"] = i
kept = 5
"""))
    assert isinstance(cfg["np"], Unresolved)
    assert cfg["pipeline"][0]["type"] == "A" and isinstance(cfg["pipeline"][0]["fn"], Unresolved)
    assert "make_pipeline" in cfg["pipeline"][0]["fn"].reason
    assert cfg["copy"] == 128  # evaluated before the loop
    assert isinstance(cfg["model"], Unresolved)  # a loop that is not run may have changed it
    assert "c.py:7" in cfg["model"].reason
    assert cfg["kept"] == 5


def test_no_code_from_the_config_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    cfg = read_python_config(write(tmp_path, "c.py", f"""
import os
os.system("touch {marker}")
open("{marker}", "w")
x = __import__("os").getcwd()
"""))
    assert not marker.exists()
    assert isinstance(cfg["x"], Unresolved)


def test_base_chain_merges_like_mmengine(tmp_path: Path) -> None:
    write(tmp_path, "a.py", "model = dict(k=1, sub=dict(p=1, q=2), keep=[1, 2])\nonly_a = 1\n")
    write(tmp_path, "b.py", "other = dict(z=0)\n")
    leaf = write(tmp_path, "leaf.py", """
_base_ = ["./a.py", "b.py"]
model = dict(sub=dict(q=3), keep=[9], new=_base_.model["k"] + 1)
other = dict(_delete_=True, w=1)
""")
    cfg = read_python_config(leaf)
    assert cfg["model"] == {"k": 1, "sub": {"p": 1, "q": 3}, "keep": [9], "new": 2}
    assert cfg["other"] == {"w": 1}
    assert cfg["only_a"] == 1
    assert "_base_" not in cfg


def test_merge_config_delete_and_inputs_untouched() -> None:
    base = {"a": {"x": 1, "y": {"z": 2}}, "b": 1}
    child = {"a": {"y": {"_delete_": True, "w": 3}}, "c": [{"_delete_": True, "n": 1}]}
    assert merge_config(base, child) == {"a": {"x": 1, "y": {"w": 3}}, "b": 1, "c": [{"n": 1}]}
    assert base == {"a": {"x": 1, "y": {"z": 2}}, "b": 1}


@pytest.mark.parametrize("files, message", [
    ({"leaf.py": "_base_ = 'missing.py'\n"}, "does not exist"),
    ({"leaf.py": "_base_ = 'a.py'\n", "a.py": "_base_ = 'leaf.py'\n"}, "cycle"),
    ({"leaf.py": "_base_ = ['a.py', 'b.py']\n", "a.py": "x = 1\n", "b.py": "x = 2\n"}, "both define 'x'"),
    ({"leaf.py": "_base_ = 3\n"}, "_base_ must be"),
    ({"leaf.py": "model = dict(\n"}, "not valid Python"),
])
def test_bad_files_raise(tmp_path: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        write(tmp_path, name, text)
    with pytest.raises(ConfigError, match=message):
        read_python_config(tmp_path / "leaf.py")


def test_awml_fixture_chain(tmp_path: Path) -> None:
    cfg = read_python_config(LEAF)
    assert cfg["custom_imports"]["imports"] == [
        "projects.CenterPoint.models",
        "autoware_ml.detection3d.datasets.t4dataset",
        "autoware_ml.detection3d.evaluation.t4metric.t4metric",
        "autoware_ml.detection3d.datasets.transforms",
        "autoware_ml.hooks",
    ]
    assert not any(m.startswith(("projects", "autoware_ml")) for m in sys.modules)
    assert cfg["train_pipeline"][7] == {"type": "ObjectNameFilter", "classes": CLASSES}  # {{_base_.class_names}}
    assert cfg["eval_class_range"] == {c: 121 for c in CLASSES}
    assert cfg["sync_bn"] == "torch"  # set under `if train_gpu_size > 1`
    assert cfg["work_dir"] == "work_dirs/centerpoint/T4Dataset/second_secfpn_4xb16_121m_j6gen2_base/"
    assert cfg["default_scope"] == "mmdet3d"  # from default_runtime.py
    # the leaf's model dict merged into the default model: type and common_heads come from the base
    assert cfg["model"]["type"] == "CenterPoint"
    assert cfg["model"]["pts_bbox_head"]["common_heads"]["vel"] == (2, 2)
    assert cfg["model"]["pts_bbox_head"]["separate_head"]["type"] == "CustomSeparateHead"
    assert cfg["model"]["pts_bbox_head"]["bbox_coder"]["max_num"] == 500
    assert cfg["model"]["data_preprocessor"]["voxel_layer"]["max_voxels"] == (64000, 64000)
