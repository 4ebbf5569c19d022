"""Read a dataset's frames ahead of the detector: worker processes, shared slots, early upload.

The dataset loop of ``evaluate``, ``verify`` and ``deploy``::

    for batch in FrameLoader(dataset, indices, use_dim, workers=4, device=device):
        detections = detector(batch.clouds)

:class:`FrameLoader` reads frames (key frame plus merged sweeps, the model's columns: the
same :meth:`FrameDataset.load <centerpoint_deploy.data.dataset.FrameDataset.load>` code as an
indexed frame) in ``torch.utils.data.DataLoader`` worker processes, ``prefetch`` batches per
worker ahead (each keeping its freed memory for the next frame, :mod:`~centerpoint_deploy.data.memory`).
The workers write each frame into a shared slot (:mod:`~centerpoint_deploy.data.frame_slots`,
page-locked when the device is CUDA) and send only its size. On CUDA the host -> GPU copy of
batch ``i + 1`` is issued on a side stream before batch ``i`` is handed out, so the copy
overlaps the previous batch's compute. Batches come out in the order asked for.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
import time
import warnings
from dataclasses import dataclass, replace
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from centerpoint_deploy.config.schema import TIME_LAG_COLUMN
from centerpoint_deploy.data.dataset import FrameDataset
from centerpoint_deploy.data.frame_slots import FrameSlots, SlotsClosed
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
    """Frames collated as a list (clouds keep their own sizes)."""

    frames: tuple[LoadedFrame, ...]

    @property
    def clouds(self) -> list[Tensor]:
        """``list[Tensor[N_i, D]]``, one per frame."""
        return [f.points for f in self.frames]

    def to(self, device: torch.device, non_blocking: bool = False) -> "FrameBatch":
        return FrameBatch(tuple(replace(f, points=f.points.to(device, non_blocking=non_blocking))
                                for f in self.frames))


@dataclass(frozen=True)
class _SlotFrame:
    """A frame a worker wrote into its shared slot: what the main process needs to read it there."""

    position: int
    index: int
    token: str
    rows: int
    read_seconds: float


@dataclass(frozen=True)
class _ReadFailure:
    """A user error raised while a worker read a frame, re-raised as itself in the main process
    (the DataLoader would wrap it in its worker traceback)."""

    error: CenterPointError


def collate_frames(items: Sequence[LoadedFrame | _SlotFrame | _ReadFailure]
                   ) -> tuple[LoadedFrame | _SlotFrame, ...] | _ReadFailure:
    """DataLoader collate: the frames as they came (no stacking), or the first read failure."""
    for item in items:
        if isinstance(item, _ReadFailure):
            return item
    return tuple(items)  # type: ignore[arg-type]


class _SelectedFrames(Dataset):
    """``Dataset``: position ``k`` -> ``dataset[indices[k]]``, ``columns`` selected, written into
    ``slots`` when it fits there (:class:`_SlotFrame`), else as a :class:`LoadedFrame`."""

    def __init__(self, dataset: FrameDataset, indices: Sequence[int], columns: Sequence[int] | None,
                 slots: FrameSlots | None = None) -> None:
        self.dataset = dataset
        self.indices = [int(i) for i in indices]
        self.columns = None if columns is None else list(columns)
        self.slots = slots

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> LoadedFrame | _SlotFrame | _ReadFailure:
        index = self.indices[position]
        start = time.perf_counter()
        try:
            frame = self.dataset[index]
        except CenterPointError as exc:
            return _ReadFailure(exc)
        points = frame.points
        columns = None if self.columns in (None, list(range(points.shape[1]))) else self.columns
        seconds = time.perf_counter() - start
        if self.slots is not None and self.slots.fits(len(points)):
            try:
                self.slots.write(position, points, columns)
            except SlotsClosed:  # the pass ended before this frame was wanted: nobody reads this
                return _ReadFailure(DatasetError("the frame loader was closed"))
            return _SlotFrame(position, index, frame.token, len(points), seconds)
        if columns is not None:
            points = points[:, columns]
        return LoadedFrame(index, frame.token, torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32)),
                           seconds)


def default_workers() -> int:
    """Reader processes when none are asked for: up to 4, leaving one core to the main process."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def _start_reader(_: int) -> None:
    """A reader process's start: keep the memory it frees for the next frame (:mod:`~centerpoint_deploy.data.memory`)."""
    keep_freed_memory()


def reader_context() -> multiprocessing.context.BaseContext:
    """The multiprocessing context reader processes start in (the platform's default)."""
    return multiprocessing.get_context()


#: Rows a slot has room for: this margin over the largest of the first frames' sizes (frames
#: vary in size; a larger one is handed over the default way, so the margin only affects speed).
SLOT_MARGIN = 1.25
#: Frames whose sizes set the slots' rows.
SLOT_SAMPLE = 8


class FrameLoader:
    """Iterable of :class:`FrameBatch`: ``batch_size`` frames of ``dataset`` at ``indices``, in order, read ahead.

    Args:
        dataset: the frames.
        indices: dataset indices, in the order wanted.
        columns: point columns to keep (``config.points.use_dim``); None keeps all.
        workers: reader processes (default :func:`default_workers`); 0 reads in this process.
        prefetch: batches each worker reads ahead.
        batch_size: frames per batch.
        device: where the batches are handed out: on CUDA each batch's clouds are on the device
            (copied from page-locked slots ahead of time); elsewhere on the host.

    Host batches are copied out of the slots (one copy per frame: on the host the detector costs
    far more), so they stay valid; device batches are the device copies. Iterating raises
    DatasetError or PointCloudError (the reader's own error) for a frame that cannot be read.
    """

    def __init__(self, dataset: FrameDataset, indices: Sequence[int], columns: Sequence[int] | None, *,
                 workers: int | None = None, prefetch: int = 2, batch_size: int = 1,
                 device: torch.device | str = "cpu") -> None:
        workers = default_workers() if workers is None else int(workers)
        if workers < 0 or prefetch < 1 or batch_size < 1:
            raise DatasetError(f"frame loader needs workers >= 0, prefetch >= 1 and batch_size >= 1; got "
                               f"{workers}, {prefetch}, {batch_size}")
        self.dataset = dataset
        self.indices = [int(i) for i in indices]
        #: floats per point of a merged frame (the readers' output before the columns are selected)
        width = max(dataset.load_dim, TIME_LAG_COLUMN + 1)
        if columns is not None and any(not 0 <= c < width for c in columns):
            raise DatasetError(f"point columns {list(columns)} are out of range for frames of {width} floats a point")
        self.columns = None if columns is None else [int(c) for c in columns]
        self.width = width if columns is None else len(self.columns)
        #: reader processes actually started (never more than the frames)
        self.workers = min(workers, len(self.indices))
        self.prefetch, self.batch_size = prefetch, batch_size
        self.device = torch.device(device)

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    def __iter__(self) -> Iterator[FrameBatch]:
        slots = self._slots()
        loader = DataLoader(_SelectedFrames(self.dataset, self.indices, self.columns, slots),
                            batch_size=self.batch_size, shuffle=False, num_workers=self.workers,
                            collate_fn=collate_frames, worker_init_fn=_start_reader,
                            multiprocessing_context=reader_context() if self.workers else None,
                            prefetch_factor=self.prefetch if self.workers else None)
        stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        batches = iter(loader)  # starts the readers
        # after the readers were forked: the driver may keep page-locked ranges out of a fork
        if slots is not None and stream is not None and not slots.pin():
            warnings.warn("the frame loader's slots could not be page-locked: uploads wait for their copies",
                          stacklevel=2)
        pending: tuple[FrameBatch, torch.cuda.Event, list[int]] | None = None
        position = 0
        try:
            for items in batches:
                if isinstance(items, _ReadFailure):
                    raise items.error
                batch = FrameBatch(tuple(self._frame(item, slots, copy=stream is None) for item in items))
                positions = list(range(position, position + len(items)))
                position += len(items)
                if stream is None:  # host batches are the consumer's own: copied out of the slots
                    self._release(slots, positions)
                    yield batch
                    continue
                with torch.cuda.stream(stream):
                    moved = batch.to(self.device, non_blocking=True)
                    copied = torch.cuda.Event()
                    copied.record(stream)
                previous, pending = pending, (moved, copied, positions)
                if previous is not None:
                    yield from self._hand_over(previous, slots)
            if pending is not None:
                yield from self._hand_over(pending, slots)
        finally:
            if stream is not None:
                stream.synchronize()  # the slots are unpinned next: no copy may still read them
            if slots is not None:
                slots.close()  # wakes readers waiting for a slot
            del batches  # stops the readers

    def _slots(self) -> FrameSlots | None:
        """Shared slots for the frames read ahead and the batches held (None with no reader processes)."""
        if not self.workers:
            return None
        largest = max(self.dataset.rows_bound(i) for i in self.indices[:SLOT_SAMPLE])
        count = self.batch_size * (self.workers * self.prefetch + 2)
        rows = max(1, math.ceil(largest * SLOT_MARGIN))
        needed, free = count * rows * self.width * 4, _shared_memory_free()
        if free is not None and needed > free // 2:
            warnings.warn(f"the frame loader's slots need {needed >> 20} MiB of shared memory and {SHARED_MEMORY} "
                          f"has {free >> 20} MiB free: frames are handed over the slower default way", stacklevel=3)
            return None
        try:
            return FrameSlots(count, rows, self.width, reader_context())
        except RuntimeError as exc:  # torch could not map the shared memory
            warnings.warn(f"the frame loader's slots could not be allocated ({exc}): frames are handed over the "
                          "slower default way", stacklevel=3)
            return None

    @staticmethod
    def _frame(item: LoadedFrame | _SlotFrame, slots: FrameSlots | None, copy: bool) -> LoadedFrame:
        """The frame of a reader's item: its slot's rows (``copy``: a copy of them), or the item itself."""
        if isinstance(item, LoadedFrame):
            return item
        assert slots is not None
        points = slots.view(item.position, item.rows)
        return LoadedFrame(item.index, item.token, _own_copy(points) if copy else points, item.read_seconds)

    def _hand_over(self, pending: tuple[FrameBatch, torch.cuda.Event, list[int]],
                   slots: FrameSlots | None) -> Iterator[FrameBatch]:
        """Yield a device batch once the consumer's stream waits for its copy; then free its slots."""
        batch, copied, positions = pending
        current = torch.cuda.current_stream(self.device)
        current.wait_event(copied)
        for cloud in batch.clouds:
            cloud.record_stream(current)
        yield batch
        copied.synchronize()  # issued a batch ago: normally done already
        self._release(slots, positions)

    @staticmethod
    def _release(slots: FrameSlots | None, positions: list[int]) -> None:
        if slots is not None:
            slots.release(positions)


#: Where shared memory lives on Linux (torch's shared tensors are files there).
SHARED_MEMORY = "/dev/shm"


def _shared_memory_free() -> int | None:
    """Bytes free in :data:`SHARED_MEMORY` (None where there is no such folder)."""
    try:
        return shutil.disk_usage(SHARED_MEMORY).free
    except OSError:
        return None


def _own_copy(points: Tensor) -> Tensor:
    """A copy of a host tensor made by one thread (``Tensor.clone`` wakes torch's intra-op threads,
    whose spinning took the cores of the readers: 105-116 frames/s instead of 289-339 with one
    reader on the 2-core CPU, ``benchmarks/read_frames.py --loader``)."""
    return torch.from_numpy(points.numpy().copy())


def load_clouds(dataset: FrameDataset, indices: Sequence[int], columns: Sequence[int] | None, *,
                workers: int | None = None) -> list[Tensor]:
    """``list[Tensor[N_i, D]]`` of the frames at ``indices`` (columns selected), read by ``workers`` processes."""
    return [cloud for batch in FrameLoader(dataset, indices, columns, workers=workers) for cloud in batch.clouds]
