"""Open a dataset: the sources a spec names, each read into frame records, here or in child processes.

A dataset is a list of sources (T4 scenes, or one info pickle); each is read into its
:class:`~centerpoint_deploy.data.dataset.FrameRecord` s (tables parsed, poses composed, ground
truth in the LiDAR frame) and the records, in source order, make the
:class:`~centerpoint_deploy.data.dataset.FrameDataset`. :func:`open_dataset` reads them in this
process; :class:`DatasetOpening` starts reading them in forked child processes, one source each
at a time, and hands the dataset over when asked: the command line starts one before it imports
torch, which took 1.4 s on the H200 machine while a 200-frame scene took 0.5-0.6 s to open
(``benchmarks/startup_phases.py``, round 18), and a dataset of many scenes is read on several cores.
Nothing here imports torch, so the children fork from a small process.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from centerpoint_deploy.data.categories import CategoryMapping
from centerpoint_deploy.data.dataset import FrameDataset, FrameRecord
from centerpoint_deploy.data.info_pickle import read_info_pickle
from centerpoint_deploy.data.paths import contained_path
from centerpoint_deploy.data.splits import read_split, split_spec
from centerpoint_deploy.data.sweeps import SweepOptions
from centerpoint_deploy.data.t4 import read_scene, resolve_scene_dir
from centerpoint_deploy.errors import DatasetError

DatasetSpec = str | Path | Sequence[str | Path]
#: One source's read: a picklable call (a child process may run it) returning its records.
SourceRead = Callable[[], list[FrameRecord]]


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


class DatasetOpening:
    """A dataset being opened: its sources read by forked child processes from now on, the
    dataset handed over by :meth:`result` (use as a context manager, so that the children stop
    when the caller fails first).

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
        processes: child processes (default one per source, leaving a core to this process);
            0 reads every source in this process, in :meth:`result`. Where processes cannot be
            forked, the sources are read in this process.

    Raises:
        DatasetError: here, for a spec that names no sources or options out of range; from
            :meth:`result`, what reading a source raises (with the offending path).
    """

    def __init__(self, spec: DatasetSpec, *, class_names: Sequence[str], category_mapping: CategoryMapping = "j6gen2",
                 sweeps_num: int = 1, load_dim: int = 5, data_root: str | Path | None = None,
                 pad_empty_sweeps: bool = True, remove_close_radius: float | None = 1.0,
                 lidar_channel: str | None = None, processes: int | None = None) -> None:
        if processes is not None and processes < 0:
            raise DatasetError(f"processes = {processes} is invalid: must be >= 0 (0 reads in this process)")
        self.spec = spec
        self.options = SweepOptions(sweeps_num, pad_empty_sweeps, remove_close_radius)
        self.class_names, self.load_dim = tuple(class_names), load_dim
        reads = source_reads(spec, self.class_names, category_mapping, sweeps_num, data_root, lidar_channel)
        wanted = min(len(reads), max(1, (os.cpu_count() or 1) - 1)) if processes is None else processes
        self._pool: ProcessPoolExecutor | None = None
        if wanted > 0 and "fork" in multiprocessing.get_all_start_methods():
            self._pool = ProcessPoolExecutor(wanted, mp_context=multiprocessing.get_context("fork"))
        self._pending: list[Future | SourceRead] = [self._pool.submit(read) for read in reads] if self._pool else reads
        self._dataset: FrameDataset | None = None

    def result(self) -> FrameDataset:
        """The dataset (waiting for the children's records)."""
        if self._dataset is None:
            try:
                records = [record for item in self._pending
                           for record in (item.result() if isinstance(item, Future) else item())]
            except BrokenProcessPool as exc:
                raise DatasetError(f"dataset {self.spec}: a process reading it stopped before it was done "
                                   f"({exc or 'killed'})") from exc
            finally:
                self.close()
            if not records:
                raise DatasetError(f"dataset {self.spec} holds no key frames")
            self._dataset = FrameDataset(records, self.class_names, self.load_dim, self.options)
        return self._dataset

    def close(self) -> None:
        """Stop the children (what they have not read yet is dropped)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> "DatasetOpening":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_dataset(spec: DatasetSpec, *, class_names: Sequence[str], category_mapping: CategoryMapping = "j6gen2",
                 sweeps_num: int = 1, load_dim: int = 5, data_root: str | Path | None = None,
                 pad_empty_sweeps: bool = True, remove_close_radius: float | None = 1.0,
                 lidar_channel: str | None = None) -> FrameDataset:
    """Open a dataset, read in this process, as a lazily loading ``Sequence[Frame]`` (arguments as
    :class:`DatasetOpening`'s).

    Raises:
        DatasetError, PointCloudError: with the offending path.
    """
    return DatasetOpening(spec, class_names=class_names, category_mapping=category_mapping, sweeps_num=sweeps_num,
                          load_dim=load_dim, data_root=data_root, pad_empty_sweeps=pad_empty_sweeps,
                          remove_close_radius=remove_close_radius, lidar_channel=lidar_channel,
                          processes=0).result()


def source_reads(spec: DatasetSpec, class_names: tuple[str, ...], category_mapping: CategoryMapping,
                 sweeps_num: int, data_root: str | Path | None, lidar_channel: str | None) -> list[SourceRead]:
    """One read per source of ``spec``, in order: the info pickle, or each T4 scene folder."""
    if isinstance(spec, (str, Path)) and str(spec).endswith(".pkl"):
        return [functools.partial(read_info_pickle, spec, class_names=class_names, category_mapping=category_mapping,
                                  max_sweeps=sweeps_num, data_root=data_root)]
    return [functools.partial(read_scene, scene, class_names=class_names, category_mapping=category_mapping,
                              max_sweeps=sweeps_num, lidar_channel=lidar_channel)
            for scene in scene_dirs(spec, data_root)]
