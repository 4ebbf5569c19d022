"""DatasetOpening: a dataset's sources read in forked child processes, equal to reading them here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from centerpoint_deploy.data import DatasetOpening, open_dataset
from centerpoint_deploy.data import opening as opening_module
from centerpoint_deploy.errors import DatasetError

from .conftest import CLASSES


def _same(a, b) -> bool:
    return len(a) == len(b) and all(
        x.token == y.token and x.lidar_path == y.lidar_path and np.array_equal(x.ego2global, y.ego2global)
        and [s.sweep2key.tolist() for s in x.sweeps] == [s.sweep2key.tolist() for s in y.sweeps]
        and np.array_equal(x.gt.boxes, y.gt.boxes) and np.array_equal(x.gt.labels, y.gt.labels)
        for x, y in zip(a.records, b.records))


@pytest.mark.parametrize("processes", [None, 1, 2])
def test_records_read_by_children_equal_those_read_here(synth_root: Path, processes: int | None) -> None:
    here = open_dataset(synth_root, class_names=CLASSES, sweeps_num=1)
    with DatasetOpening(synth_root, class_names=CLASSES, sweeps_num=1, processes=processes) as opening:
        opened = opening.result()
        assert opening.result() is opened  # handed over once, kept
    assert len({r.scene for r in opened.records}) == 2 and _same(here, opened)  # both scenes, in order
    assert opened.sweep_options == here.sweep_options and opened.load_dim == here.load_dim


def test_a_childs_error_is_raised_by_result(synth_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(synth_root, root)
    broken = sorted(root.iterdir())[1] / "annotation" / "sample.json"
    broken.write_text('[{"token": "a",')
    opening = DatasetOpening(root, class_names=CLASSES, processes=2)
    with pytest.raises(DatasetError, match=r"sample\.json: malformed JSON"):
        opening.result()


def test_a_spec_naming_nothing_is_refused_before_any_child_starts(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        DatasetOpening(tmp_path / "missing", class_names=CLASSES)
    with pytest.raises(DatasetError, match="sweeps_num"):
        DatasetOpening(tmp_path, class_names=CLASSES, sweeps_num=-1)
    with pytest.raises(DatasetError, match="processes = -1"):
        DatasetOpening(tmp_path, class_names=CLASSES, processes=-1)


def _die(*args, **kwargs):
    os._exit(3)


def test_a_child_that_dies_is_a_dataset_error(synth_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(opening_module, "read_scene", _die)
    with pytest.raises(DatasetError, match="stopped before it was done"):
        DatasetOpening(synth_root, class_names=CLASSES, processes=1).result()


def test_opening_a_dataset_imports_no_torch() -> None:
    """The command line forks the children before it imports torch (small, torch-free children)."""
    code = "import sys, centerpoint_deploy.data; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
