"""Read a dataset's frames ahead of the detector: worker processes, prefetch, pinned memory, early upload.

The dataset loop of ``evaluate``, ``verify`` and ``deploy``::

    for batch in device_prefetch(FrameLoader(dataset, indices, use_dim, workers=4, device=device), device):
        detections = detector(batch.clouds)

:class:`FrameLoader` reads frames (key frame plus merged sweeps, the model's columns: the
same :meth:`FrameDataset.load <centerpoint_deploy.data.dataset.FrameDataset.load>` code as an
indexed frame) in ``torch.utils.data.DataLoader`` worker processes, ``prefetch`` frames per
worker ahead (each keeping its freed memory for the next frame, :mod:`~centerpoint_deploy.data.memory`),
into pinned host memory when the device is CUDA. :func:`device_prefetch` then
starts the host -> GPU copy of frame ``i + 1`` on a side stream before frame ``i`` is handed
out, so the copy overlaps the previous frame's compute. Frames come out in the order asked for.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from centerpoint_deploy.data.dataset import FrameDataset
from centerpoint_deploy.data.memory import keep_freed_memory
from centerpoint_deploy.errors import CenterPointError, DatasetError


@dataclass(frozen=True)
class LoadedFrame:
    """One frame as the detector takes it.

    Attributes:
        index: the frame's index in the dataset.
        token: its sample token.
        points: ``Tensor[N, D]`` float32, the selected columns of the merged frame
            (``D = len(columns)``, or every column when none were selected).
        read_seconds: time the worker spent reading and merging it.
    """

    index: int
    token: str
    points: Tensor
    read_seconds: float


@dataclass(frozen=True)
class FrameBatch:
    """Frames collated as a list (clouds keep their own sizes); pinnable by the DataLoader."""

    frames: tuple[LoadedFrame, ...]

    @property
    def clouds(self) -> list[Tensor]:
        """``list[Tensor[N_i, D]]``, one per frame."""
        return [f.points for f in self.frames]

    def pin_memory(self) -> "FrameBatch":
        """The same frames in page-locked memory (called by the DataLoader's pinning thread)."""
        return FrameBatch(tuple(replace(f, points=f.points.pin_memory()) for f in self.frames))

    def to(self, device: torch.device, non_blocking: bool = False) -> "FrameBatch":
        return FrameBatch(tuple(replace(f, points=f.points.to(device, non_blocking=non_blocking))
                                for f in self.frames))


@dataclass(frozen=True)
class _ReadFailure:
    """A user error raised while a worker read a frame, re-raised as itself in the main process
    (the DataLoader would wrap it in its worker traceback)."""

    error: CenterPointError


def collate_frames(items: Sequence[LoadedFrame | _ReadFailure]) -> FrameBatch | _ReadFailure:
    """DataLoader collate: the frames as a list (no stacking), or the first read failure."""
    for item in items:
        if isinstance(item, _ReadFailure):
            return item
    return FrameBatch(tuple(items))  # type: ignore[arg-type]


class _SelectedFrames(Dataset):
    """``Dataset``: position ``k`` -> :class:`LoadedFrame` of ``dataset[indices[k]]``, ``columns`` selected."""

    def __init__(self, dataset: FrameDataset, indices: Sequence[int], columns: Sequence[int] | None) -> None:
        self.dataset = dataset
        self.indices = [int(i) for i in indices]
        self.columns = None if columns is None else list(columns)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> LoadedFrame | _ReadFailure:
        index = self.indices[position]
        start = time.perf_counter()
        try:
            frame = self.dataset[index]
        except CenterPointError as exc:
            return _ReadFailure(exc)
        points = frame.points
        if self.columns is not None and self.columns != list(range(points.shape[1])):  # else: no copy
            points = points[:, self.columns]
        tensor = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32))
        return LoadedFrame(index, frame.token, tensor, time.perf_counter() - start)


def default_workers() -> int:
    """Reader processes when none are asked for: up to 4, leaving one core to the main process."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def _start_reader(_: int) -> None:
    """A reader process's start: keep the memory it frees for the next frame (:mod:`~centerpoint_deploy.data.memory`)."""
    keep_freed_memory()


class FrameLoader:
    """Iterable of :class:`FrameBatch`: ``batch_size`` frames of ``dataset`` at ``indices``, in order, read ahead.

    Args:
        dataset: the frames.
        indices: dataset indices, in the order wanted.
        columns: point columns to keep (``config.points.use_dim``); None keeps all.
        workers: reader processes (default :func:`default_workers`); 0 reads in this process.
        prefetch: batches each worker reads ahead.
        batch_size: frames per batch.
        device: where the frames go next; CUDA pins the host copies.

    Iterating raises DatasetError or PointCloudError (the reader's own error) for a frame that
    cannot be read.
    """

    def __init__(self, dataset: FrameDataset, indices: Sequence[int], columns: Sequence[int] | None, *,
                 workers: int | None = None, prefetch: int = 4, batch_size: int = 1,
                 device: torch.device | str = "cpu") -> None:
        workers = default_workers() if workers is None else int(workers)
        if workers < 0 or prefetch < 1 or batch_size < 1:
            raise DatasetError(f"frame loader needs workers >= 0, prefetch >= 1 and batch_size >= 1; got "
                               f"{workers}, {prefetch}, {batch_size}")
        self.source = _SelectedFrames(dataset, indices, columns)
        #: reader processes actually started (never more than the frames)
        self.workers = min(workers, len(self.source))
        self._loader = DataLoader(self.source, batch_size=batch_size, shuffle=False, num_workers=self.workers,
                                  collate_fn=collate_frames, worker_init_fn=_start_reader,
                                  pin_memory=torch.device(device).type == "cuda",
                                  prefetch_factor=prefetch if self.workers > 0 else None)

    def __len__(self) -> int:
        return len(self._loader)

    def __iter__(self) -> Iterator[FrameBatch]:
        for batch in self._loader:
            if isinstance(batch, _ReadFailure):
                raise batch.error
            yield batch


def load_clouds(dataset: FrameDataset, indices: Sequence[int], columns: Sequence[int] | None, *,
                workers: int | None = None) -> list[Tensor]:
    """``list[Tensor[N_i, D]]`` of the frames at ``indices`` (columns selected), read by ``workers`` processes."""
    loader = FrameLoader(dataset, indices, columns, workers=workers)
    return [cloud for batch in loader for cloud in batch.clouds]


def device_prefetch(batches: Iterable[FrameBatch], device: torch.device | str) -> Iterator[FrameBatch]:
    """``batches`` on ``device``; on CUDA batch ``i + 1``'s copy is issued on a side stream before
    batch ``i`` is yielded, so it overlaps batch ``i``'s compute. Elsewhere the batches pass through."""
    device = torch.device(device)
    if device.type != "cuda":
        yield from batches
        return
    stream = torch.cuda.Stream(device)
    pending: tuple[FrameBatch, torch.cuda.Event] | None = None
    for batch in batches:
        with torch.cuda.stream(stream):
            moved = batch.to(device, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record(stream)
        if pending is not None:
            yield _ready(*pending)
        pending = (moved, copied)
    if pending is not None:
        yield _ready(*pending)


def _ready(batch: FrameBatch, copied: torch.cuda.Event) -> FrameBatch:
    """Make the consumer's stream wait for the copy, and keep the memory alive for that stream."""
    current = torch.cuda.current_stream(batch.frames[0].points.device)
    current.wait_event(copied)
    for cloud in batch.clouds:
        cloud.record_stream(current)
    return batch
