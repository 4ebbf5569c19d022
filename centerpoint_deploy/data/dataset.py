"""A lazily loading sequence of :class:`Frame` built from light per-frame records.

Readers (T4 scenes, info pickles) parse their metadata into :class:`FrameRecord` objects
once; point files are read only when a frame is indexed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import overload

import numpy as np

from centerpoint_deploy.data.frame import Frame, GroundTruth
from centerpoint_deploy.data.pointcloud import read_points, read_points_into
from centerpoint_deploy.data.sweeps import MergePart, RawLayout, SweepOptions, merge_parts, merge_sources, raw_layout
from centerpoint_deploy.errors import DatasetError


@dataclass(frozen=True)
class SweepRecord:
    """Where a previous sweep is and how it maps into its key frame.

    Attributes:
        lidar_path: the sweep's point file.
        timestamp: sweep time, integer microseconds.
        sweep2key: 4x4 sweep sensor -> key frame sensor.
    """

    lidar_path: str
    timestamp: int
    sweep2key: np.ndarray


@dataclass(frozen=True)
class FrameRecord:
    """Everything about a key frame except its points (see :class:`Frame` for the fields)."""

    token: str
    scene: str
    timestamp: int
    lidar_path: str
    ego2global: np.ndarray
    lidar2ego: np.ndarray
    sweeps: tuple[SweepRecord, ...] = ()
    gt: GroundTruth | None = None


@dataclass
class FrameDataset(Sequence[Frame]):
    """``Sequence[Frame]``: reads and merges the points of a frame when it is indexed.

    Attributes:
        records: one per key frame, in dataset order.
        class_names: the classes ground-truth labels index into.
        load_dim: floats per point in the point files.
        sweep_options: how previous sweeps are merged.
    """

    records: list[FrameRecord]
    class_names: tuple[str, ...]
    load_dim: int = 5
    sweep_options: SweepOptions = field(default_factory=SweepOptions)

    def __len__(self) -> int:
        return len(self.records)

    @overload
    def __getitem__(self, index: int) -> Frame: ...

    @overload
    def __getitem__(self, index: slice) -> "FrameDataset": ...

    def __getitem__(self, index: int | slice) -> "Frame | FrameDataset":
        if isinstance(index, slice):
            return FrameDataset(self.records[index], self.class_names, self.load_dim, self.sweep_options)
        if not isinstance(index, (int, np.integer)) or not -len(self) <= index < len(self):
            raise DatasetError(f"frame index {index!r} is out of range for a dataset of {len(self)} frames")
        return self.load(self.records[int(index)])

    def __iter__(self) -> Iterator[Frame]:
        """Frames in dataset order; stops after the last one."""
        for record in self.records:
            yield self.load(record)

    @property
    def tokens(self) -> list[str]:
        """Sample tokens of all frames, in order (no point file is read)."""
        return [r.token for r in self.records]

    def rows_bound(self, index: int) -> int:
        """Points the merged frame at ``index`` has at most when its files are raw float32 (``.bin``):
        their sizes over ``4 * load_dim`` (for other formats an estimate; a missing file counts 0).
        Reads no point file."""
        record = self.records[index]
        options = self.sweep_options
        key = _file_rows(record.lidar_path, self.load_dim)
        sweeps = record.sweeps[: options.sweeps_num]
        if options.sweeps_num and not sweeps and options.pad_empty_sweeps:
            return key * (1 + options.sweeps_num)
        return key + sum(_file_rows(s.lidar_path, self.load_dim) for s in sweeps)

    def load(self, record: FrameRecord) -> Frame:
        """Read the key frame and its sweeps and merge them into one :class:`Frame`."""
        sources = [read_points(path, load_dim=self.load_dim) for path in self._source_paths(record)]
        points = merge_sources(sources, self._parts(record), self.sweep_options.remove_close_radius)
        return Frame(record.token, record.scene, record.timestamp, record.lidar_path, points,
                     record.gt, record.ego2global, record.lidar2ego)

    def read_sources(self, index: int, out: np.ndarray) -> RawLayout | None:
        """The frame at ``index`` unmerged: its key frame's and sweeps' points, as read, one after
        another into ``out`` (``ndarray[R, load_dim]`` float32, C-contiguous), for
        :func:`~centerpoint_deploy.data.device_merge.merge_on_device`; ``None`` when they do not fit.

        Raises:
            PointCloudError: as :meth:`load`.
        """
        record, start, sources = self.records[index], 0, []
        for path in self._source_paths(record):
            rows = read_points_into(path, self.load_dim, out[start:])
            if rows is None:
                return None
            sources.append(out[start: start + rows])
            start += rows
        return raw_layout(sources, self._parts(record), self.sweep_options.remove_close_radius)

    def _source_paths(self, record: FrameRecord) -> list[str]:
        """The key frame's point file, then those of the sweeps merged (source order)."""
        return [record.lidar_path, *(s.lidar_path for s in record.sweeps[: self.sweep_options.sweeps_num])]

    def _parts(self, record: FrameRecord) -> tuple[MergePart, ...]:
        return merge_parts([(s.sweep2key, (record.timestamp - s.timestamp) / 1e6)
                            for s in record.sweeps[: self.sweep_options.sweeps_num]], self.sweep_options)


def _file_rows(path: str, load_dim: int) -> int:
    """A point file's size over ``4 * load_dim`` (0 when it cannot be read)."""
    try:
        return os.stat(path).st_size // (4 * load_dim)
    except OSError:
        return 0
