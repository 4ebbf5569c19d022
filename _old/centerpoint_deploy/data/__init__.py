"""Datasets: point files, T4 scenes, info pickles, split files and a synthetic T4 world.

``open_dataset`` is the one entry point the other stages use::

    frames = open_dataset("data/t4/", class_names=config.class_names, sweeps_num=config.points.sweeps_num)
    frame = frames[0]            # Frame: points [N, 5] (column 4 = time lag), gt boxes [M, 9]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from centerpoint_deploy.data.categories import CategoryMapping
from centerpoint_deploy.data.dataset import FrameDataset, FrameRecord
from centerpoint_deploy.data.frame import Frame, GroundTruth
from centerpoint_deploy.data.info_pickle import read_info_pickle
from centerpoint_deploy.data.paths import contained_path
from centerpoint_deploy.data.splits import read_split, split_spec
from centerpoint_deploy.data.sweeps import SweepOptions
from centerpoint_deploy.data.t4 import read_scene, resolve_scene_dir
from centerpoint_deploy.errors import DatasetError

__all__ = ["Frame", "FrameDataset", "GroundTruth", "SweepOptions", "open_dataset", "scene_dirs"]

DatasetSpec = str | Path | Sequence[str | Path]


def scene_dirs(spec: DatasetSpec, data_root: str | Path | None = None) -> list[Path]:
    """The T4 scene folders a spec names, in order.

    Args:
        spec: a scene folder, a root folder of scene folders (sorted by name), a split file
            (``.yaml``/``.txt``, optionally ``FILE.yaml:SPLIT``), or a list of scene folders.
        data_root: folder split-file entries are relative to (default: the split file's folder).
    """
    if not isinstance(spec, (str, Path)):
        return [d for item in spec for d in scene_dirs(item, data_root)]
    split = split_spec(spec)
    if split is not None:
        path, key = split
        root = Path(data_root) if data_root is not None else path.parent
        dirs = [contained_path(root, entry, f"split file {path}: entry") for entry in read_split(path, key)]
        missing = [str(d) for d in dirs if resolve_scene_dir(d) is None]
        if missing:
            raise DatasetError(f"split file {path}: {len(missing)} scene(s) not found under {root}: {missing[:5]}")
        return dirs
    path = Path(spec)
    if not path.exists():
        raise DatasetError(f"dataset {path} does not exist")
    if resolve_scene_dir(path) is not None:
        return [path]
    if path.is_dir():
        dirs = sorted(d for d in path.iterdir() if d.is_dir() and resolve_scene_dir(d) is not None)
        if dirs:
            return dirs
    raise DatasetError(f"{path} is not a dataset: expected a T4 scene folder (with annotation/), a folder of "
                       "scenes, a split file (.yaml/.yml/.txt) or an info pickle (.pkl)")


def open_dataset(spec: DatasetSpec, *, class_names: Sequence[str], category_mapping: CategoryMapping = "j6gen2",
                 sweeps_num: int = 1, load_dim: int = 5, data_root: str | Path | None = None,
                 pad_empty_sweeps: bool = True, remove_close_radius: float | None = 1.0,
                 lidar_channel: str | None = None) -> FrameDataset:
    """Open a dataset as a lazily loading ``Sequence[Frame]``.

    Args:
        spec: an info pickle (``.pkl``), a T4 scene folder, a folder of scenes, a split file
            (``FILE.yaml``, ``FILE.yaml:SPLIT``, ``FILE.txt``) or a list of scene folders.
        class_names: classes ground-truth labels index into (normally ``ModelConfig.class_names``).
        category_mapping: ``"j6gen2"``, ``"nuscenes"``, ``"identity"`` or a dict category -> class.
        sweeps_num: previous sweeps merged into each key frame (``ModelConfig.points.sweeps_num``).
        load_dim: floats per point in the point files.
        data_root: for pickles, the folder point paths are relative to (default: the pickle's
            folder); for split files, the folder scene entries are relative to.
        pad_empty_sweeps, remove_close_radius: mmdet3d sweep options (see :class:`SweepOptions`).
        lidar_channel: T4 sensor channel (default LIDAR_CONCAT, then LIDAR_TOP).

    Raises:
        DatasetError, PointCloudError: with the offending path.
    """
    options = SweepOptions(sweeps_num, pad_empty_sweeps, remove_close_radius)
    names = tuple(class_names)
    if isinstance(spec, (str, Path)) and str(spec).endswith(".pkl"):
        records = read_info_pickle(spec, class_names=names, category_mapping=category_mapping,
                                   max_sweeps=sweeps_num, data_root=data_root)
    else:
        records: list[FrameRecord] = []
        for scene in scene_dirs(spec, data_root):
            records += read_scene(scene, class_names=names, category_mapping=category_mapping,
                                  max_sweeps=sweeps_num, lidar_channel=lidar_channel)
    if not records:
        raise DatasetError(f"dataset {spec} holds no key frames")
    return FrameDataset(records, names, load_dim, options)
