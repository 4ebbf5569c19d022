"""Read a dataset's frames ahead of the detector: reader processes, shared slots, early upload.

The dataset loop of ``evaluate``, ``verify`` and ``deploy``::

    for batch in FrameLoader(dataset, indices, use_dim, workers=4, device=device):
        detections = detector(batch.clouds)

:class:`FrameLoader` reads frames (key frame plus merged sweeps, the model's columns: the
same :meth:`FrameDataset.load <centerpoint_deploy.data.dataset.FrameDataset.load>` code as an
indexed frame) in the reader processes of a :class:`~centerpoint_deploy.data.readers.ReaderPool`
(the process's shared one, kept for the next pass over the same dataset), each keeping its freed
memory for the next frame (:mod:`~centerpoint_deploy.memory`). The readers write each frame
into a shared slot (:mod:`~centerpoint_deploy.data.frame_slots`, page-locked when the device is
CUDA) and send only its size. On CUDA the host -> GPU copy of batch ``i + 1`` is issued on a
side stream before batch ``i`` is handed out, so the copy overlaps the previous batch's compute;
there the readers write the sources of each frame with several sweeps as read, and the sweeps are
merged on that stream after the copy (:mod:`~centerpoint_deploy.data.device_merge`).
Batches come out in the order asked for.
"""

from __future__ import annotations

import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass, replace
from typing import Iterator, Sequence

import torch
from torch import Tensor

from centerpoint_deploy.config.schema import TIME_LAG_COLUMN
from centerpoint_deploy.data.dataset import FrameDataset
from centerpoint_deploy.data.device_merge import MergeGraphs, merge_on_device
from centerpoint_deploy.data.readers import (InlineFrame, ReaderPool, ReadFrame, SlotFrame, SlotPlan, selected_columns,
                                             shared_pool)
from centerpoint_deploy.errors import DatasetError


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


#: Reader processes when none are asked for and a frame reads few files (they keep up with the
#: pipeline's 600 frames/s of one-sweep frames on the H200 machine).
DEFAULT_WORKERS = 4
#: Files a frame reads (key frame and sweeps) per default reader beyond those: a reader moves about
#: 1.4 GB/s of point files on the H200 machine (a 10-sweep frame of 21 MB in 14.6 ms), and the
#: pipeline takes 10-sweep frames at 350 a second; 4 readers fed the loop 228 frames/s of them and
#: 8 readers 290 (round 17).
FILES_PER_READER = 1.5


def default_workers(files_per_frame: int = 1) -> int:
    """Reader processes when none are asked for: :data:`DEFAULT_WORKERS`, or one for every
    :data:`FILES_PER_READER` files a frame reads when that is more, leaving one core to the main
    process (``files_per_frame``: 11 for a key frame and ten sweeps: 8 readers)."""
    wanted = max(DEFAULT_WORKERS, math.ceil(files_per_frame / FILES_PER_READER))
    return max(0, min(wanted, (os.cpu_count() or 1) - 1))


#: Files a frame reads (key frame and sweeps) from which the default is to merge it on the device.
#: Fewer merge in the readers: a reader merges a key frame and one sweep in 3.9 ms (1.25 ms to read
#: them alone; 2-core CPU, ``benchmarks/read_frames.py --sweeps 1``), which four readers do faster
#: than the pipeline takes them, while the merge graph's launch cost the loop's main thread 0.37 of
#: its 1.77 ms a frame (round 18: the steady one-sweep loop on the H200, 616 frames/s with the
#: frames merged on the device and 670 with them merged in the readers, in one process).
DEVICE_MERGE_FILES = 3


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
        workers: reader processes (default :func:`default_workers` of the files a frame reads); 0 reads
            in this process.
        prefetch: frames each reader reads ahead of the batch being read.
        batch_size: frames per batch.
        device: where the batches are handed out: on CUDA each batch's clouds are on the device
            (copied from page-locked slots ahead of time); elsewhere on the host.
        device_merge: the readers hand over each frame's sources as read and the sweeps are merged
            after the upload (:mod:`~centerpoint_deploy.data.device_merge`), instead of in the
            readers; default: on CUDA when a frame reads at least :data:`DEVICE_MERGE_FILES` files (with
            ten sweeps merging costs a reader four times the reading).

    Host batches are copied out of the slots (one copy per frame: on the host the detector costs
    far more), so they stay valid; device batches are the device copies. Iterating raises
    DatasetError or PointCloudError (the reader's own error) for a frame that cannot be read.
    """

    def __init__(self, dataset: FrameDataset, indices: Sequence[int], columns: Sequence[int] | None, *,
                 workers: int | None = None, prefetch: int = 2, batch_size: int = 1,
                 device: torch.device | str = "cpu", device_merge: bool | None = None) -> None:
        files_per_frame = 1 + dataset.sweep_options.sweeps_num
        workers = default_workers(files_per_frame) if workers is None else int(workers)
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
        #: reader processes (none for no frames); a pass uses the process's shared readers when they
        #: fit it (:func:`~centerpoint_deploy.data.readers.shared_pool`)
        self.workers = workers if self.indices else 0
        self.prefetch, self.batch_size = prefetch, batch_size
        self.device = torch.device(device)
        self.device_merge = (self.device.type == "cuda" and files_per_frame >= DEVICE_MERGE_FILES
                             if device_merge is None else bool(device_merge))

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    def start(self) -> None:
        """Start the readers now: the process's shared pool, which the next pass with these settings
        takes over (a command calls this before it loads its detectors, while forking is cheap)."""
        if self.workers:
            shared_pool(self.dataset, self.workers, *self._plan())

    def __iter__(self) -> Iterator[FrameBatch]:
        if not self.workers:
            yield from self._read_here()
            return
        pool, shared = shared_pool(self.dataset, self.workers, *self._plan())
        cuda = self.device.type == "cuda"
        # after the readers were forked: the driver may keep page-locked ranges out of a fork
        if cuda and pool.slots is not None and not pool.pin():
            warnings.warn("the frame loader's slots could not be page-locked: uploads wait for their copies",
                          stacklevel=2)
        stream = torch.cuda.Stream(self.device) if cuda else None
        merges = MergeGraphs(self.device, self.columns) if cuda and self.device_merge else None
        try:
            # leaving the block frees the pass's slots
            with pool.reading(self.indices, self.columns, unmerged=self.device_merge) as frames:
                try:
                    yield from self._batches(frames, pool, stream, merges)
                finally:
                    if stream is not None:
                        stream.synchronize()  # no copy may still read the slots the pass frees next
        finally:
            if not shared:
                pool.close()

    def _batches(self, frames: Iterator[ReadFrame], pool: ReaderPool, stream: "torch.cuda.Stream | None",
                 merges: MergeGraphs | None) -> Iterator[FrameBatch]:
        """The pass's batches: host copies, or (``stream``) device copies issued a batch ahead (sources
        merged by ``merges``)."""
        pending: tuple[FrameBatch, torch.cuda.Event, list[int]] | None = None
        for items in _batched(frames, self.batch_size):
            positions = [item.position for item in items]
            if stream is None:  # host batches are the consumer's own: copied out of the slots
                batch = FrameBatch(tuple(self._frame(item, pool, None) for item in items))
                pool.release(positions)
                yield batch
                continue
            with torch.cuda.stream(stream):
                moved = FrameBatch(tuple(self._frame(item, pool, merges) for item in items))
                copied = torch.cuda.Event()
                copied.record(stream)
            previous, pending = pending, (moved, copied, positions)
            if previous is not None:
                yield from self._hand_over(previous, pool)
        if pending is not None:
            yield from self._hand_over(pending, pool)

    def _read_here(self) -> Iterator[FrameBatch]:
        """The batches read in this process (no reader processes)."""
        for start in range(0, len(self.indices), self.batch_size):
            loaded = []
            for index in self.indices[start: start + self.batch_size]:
                begin = time.perf_counter()
                frame = self.dataset[index]
                loaded.append(LoadedFrame(index, frame.token, selected_columns(frame.points, self.columns),
                                          time.perf_counter() - begin))
            batch = FrameBatch(tuple(loaded))
            yield batch.to(self.device) if self.device.type == "cuda" else batch

    def _plan(self) -> tuple[SlotPlan, bool]:
        """``(plan, with_slots)``: shared slots for the frames read ahead and the batches held, and
        whether there is shared memory for them."""
        largest = max(self.dataset.rows_bound(i) for i in self.indices[:SLOT_SAMPLE])
        # held: the batch handed out and the next one on its way to the device; read: the batch after
        # them, and each reader's frames ahead
        count = 3 * self.batch_size + self.workers * self.prefetch
        width = self.dataset.load_dim if self.device_merge else self.width  # unmerged: the sources as read
        plan = SlotPlan(count, max(1, math.ceil(largest * SLOT_MARGIN)), width, frame_rows=largest)
        needed, free = plan.count * plan.rows * plan.width * 4, _shared_memory_free()
        if free is not None and needed > free // 2:
            warnings.warn(f"the frame loader's slots need {needed >> 20} MiB of shared memory and {SHARED_MEMORY} "
                          f"has {free >> 20} MiB free: frames are handed over the slower default way", stacklevel=3)
            return plan, False
        return plan, True

    def _frame(self, item: ReadFrame, pool: ReaderPool, merges: MergeGraphs | None) -> LoadedFrame:
        """The frame of a reader's item where the batches go: on CUDA copied from its slot (or its own
        points) without waiting, on the host a copy of its slot's rows (or its own points); merged
        there when the reader handed over its sources (on CUDA by ``merges``' graphs)."""
        points = item.points if isinstance(item, InlineFrame) else pool.view(item)
        layout = item.layout if isinstance(item, SlotFrame) else None
        if layout is not None and merges is not None:  # uploaded into the graph's buffer, columns selected there
            return LoadedFrame(item.index, item.token, merges(points, layout), item.read_seconds)
        if self.device.type == "cuda":
            points = points.to(self.device, non_blocking=True)
        elif isinstance(item, SlotFrame) and layout is None:
            points = _own_copy(points)
        if layout is not None:  # a new tensor: the slot's rows are only read
            points = merge_on_device(points, layout)
            if self.columns is not None and self.columns != list(range(points.shape[1])):
                points = points[:, self.columns]
        return LoadedFrame(item.index, item.token, points, item.read_seconds)

    def _hand_over(self, pending: tuple[FrameBatch, torch.cuda.Event, list[int]],
                   pool: ReaderPool) -> Iterator[FrameBatch]:
        """Yield a device batch once the consumer's stream waits for its copy; then free its slots."""
        batch, copied, positions = pending
        current = torch.cuda.current_stream(self.device)
        current.wait_event(copied)
        for cloud in batch.clouds:
            cloud.record_stream(current)
        yield batch
        copied.synchronize()  # issued a batch ago: normally done already
        pool.release(positions)


def _batched(frames: Iterator[ReadFrame], size: int) -> Iterator[list[ReadFrame]]:
    """``frames`` in lists of ``size`` (the last may be shorter)."""
    batch: list[ReadFrame] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


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
