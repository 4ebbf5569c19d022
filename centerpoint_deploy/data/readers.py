"""Reader processes that stay up across passes over a dataset and write its frames into shared slots.

Starting readers is not free: on the H200 machine the first frame of a pass came 350-400 ms after
the pass began when the readers were forked from a process holding a CUDA context and 4 GB of
memory (round 11), a third of a 160-frame ``evaluate``. A :class:`ReaderPool` forks its readers once
and serves every later pass over the same dataset: :func:`shared_pool` keeps one per process and
hands it to the next pass that fits it (the ``evaluate`` command starts it before it loads the
detectors, while the process is small: :meth:`FrameLoader.start
<centerpoint_deploy.data.loader.FrameLoader.start>`).

A pass (:meth:`ReaderPool.reading`) puts tasks ``(position, dataset index, columns)`` on one queue that
every idle reader takes from, so a batch's frames are read side by side. Positions count up over
all passes of a pool; frame ``p`` goes into slot ``p % count`` of the pool's
:class:`~centerpoint_deploy.data.frame_slots.FrameSlots` (a frame too large for a slot comes
through the queue instead, in its own shared memory) and a small message says so. The pass yields
the frames in position order and never has more frames out than slots: the consumer
:meth:`~ReaderPool.release`\\ s each frame when done with it. A pass that stops early cancels what was
read ahead and waits until no reader is still writing it, so the next pass starts on free slots.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import multiprocessing.context
import queue
import signal
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.multiprocessing  # noqa: F401 - registers the pickling of tensors through shared memory
from threadpoolctl import threadpool_limits
from torch import Tensor

from centerpoint_deploy.data.dataset import FrameDataset
from centerpoint_deploy.data.sweeps import RawLayout
from centerpoint_deploy.data.frame_slots import FrameCancelled, FrameSlots
from centerpoint_deploy.memory import keep_freed_memory
from centerpoint_deploy.errors import CenterPointError, DatasetError

#: Seconds the main process waits for a reader's message before it checks that the readers live.
_POLL_SECONDS = 0.5
#: Seconds a closing pool waits for its readers to exit before it terminates them.
_JOIN_SECONDS = 5.0


@dataclass(frozen=True)
class SlotPlan:
    """The shared slots a pass wants: ``count`` frames of up to ``rows`` points of ``width`` floats,
    for frames of about ``frame_rows`` points (``rows`` leaves a margin over them)."""

    count: int
    rows: int
    width: int
    frame_rows: int

    def covers(self, other: "SlotPlan") -> bool:
        """Whether slots of this plan serve a pass that wants ``other`` (its frames fit)."""
        return self.width == other.width and self.count >= other.count and self.rows >= other.frame_rows


@dataclass(frozen=True)
class _Task:
    position: int
    index: int
    columns: tuple[int, ...] | None
    unmerged: bool = False  # the sources as read, to be merged after the upload (columns then ignored)


@dataclass(frozen=True)
class SlotFrame:
    """A frame a reader wrote into the slot of its position: ``rows`` points there, merged with its
    columns selected, or (``layout`` given) its sources as read, for
    :func:`~centerpoint_deploy.data.device_merge.merge_on_device`."""

    position: int
    index: int
    token: str
    rows: int
    read_seconds: float
    layout: RawLayout | None = None


@dataclass(frozen=True)
class InlineFrame:
    """A frame too large for a slot, handed over in its own shared memory (``points [N, D]`` float32)."""

    position: int
    index: int
    token: str
    points: Tensor
    read_seconds: float


@dataclass(frozen=True)
class _Failure:
    """A user error a reader raised for a frame (re-raised as itself in the main process)."""

    position: int
    error: CenterPointError


@dataclass(frozen=True)
class _Crash:
    """Anything else a reader raised: a bug, reported with the reader's traceback."""

    position: int
    text: str


@dataclass(frozen=True)
class _Skipped:
    """A cancelled position: the reader did not write it."""

    position: int


_Message = SlotFrame | InlineFrame | _Failure | _Crash | _Skipped


@dataclass
class _Pass:
    """A running pass: its first position, the tasks handed out, those whose message has not come."""

    base: int
    submitted: int = 0
    awaited: set[int] = field(default_factory=set)


ReadFrame = SlotFrame | InlineFrame


def reader_context() -> multiprocessing.context.BaseContext:
    """The multiprocessing context reader processes start in (the platform's default)."""
    return multiprocessing.get_context()


class ReaderPool:
    """``workers`` reader processes over ``dataset``, ``plan.count`` frames out at once, in the shared
    slots of ``plan`` (``with_slots`` False, or shared memory that cannot be had: every frame comes
    through the queue). The readers start at once and run until :meth:`close`.

    One pass at a time (:meth:`reading`); a pool whose readers died is closed and refuses further passes.
    """

    def __init__(self, dataset: FrameDataset, workers: int, plan: SlotPlan, *, with_slots: bool = True,
                 context: multiprocessing.context.BaseContext | None = None) -> None:
        if workers < 1:
            raise DatasetError(f"a reader pool needs workers >= 1, got {workers}")
        context = context or reader_context()
        self.dataset, self.workers, self.plan, self.with_slots = dataset, workers, plan, with_slots
        self._records = tuple(dataset.records)  # held: what the readers were started with
        self.slots = _allocate(plan, context) if with_slots else None
        self._tasks = context.Queue()
        self._messages = context.Queue()
        self._next_position = 0
        self._outstanding: set[int] = set()  # positions handed to readers and not released
        self.busy = False
        self.closed = False
        self._processes = [context.Process(target=_reader_main, args=(dataset, self.slots, self._tasks,
                                                                     self._messages),
                                           daemon=True, name=f"frame-reader-{i}") for i in range(workers)]
        for process in self._processes:
            process.start()

    def serves(self, dataset: FrameDataset, workers: int, plan: SlotPlan, with_slots: bool) -> bool:
        """Whether a pass over ``dataset`` with ``workers`` readers and slots ``plan`` may run here."""
        if self.closed or self.busy or dataset is not self.dataset or workers != self.workers:
            return False
        if len(dataset.records) != len(self._records) or any(a is not b for a, b in zip(dataset.records,
                                                                                         self._records)):
            return False  # records replaced since the readers started: they would read the old ones
        if with_slots != self.with_slots:
            return False
        return self.plan.covers(plan) if with_slots else self.plan.count >= plan.count

    def pin(self) -> bool:
        """Page-lock the slots for asynchronous copies to CUDA (False: no slots, or the driver refused)."""
        return self.slots is not None and self.slots.pin()

    def view(self, frame: SlotFrame) -> Tensor:
        """``Tensor[rows, width]``: ``frame``'s points in its slot (valid until released)."""
        assert self.slots is not None
        return self.slots.view(frame.position, frame.rows)

    def release(self, positions: Iterable[int]) -> None:
        """The frames at ``positions`` are no longer read: their slots may take the next frames."""
        mine = [p for p in positions if p in self._outstanding]
        self._outstanding.difference_update(mine)
        if self.slots is not None:
            self.slots.release(sorted(mine))

    @contextlib.contextmanager
    def reading(self, indices: Sequence[int], columns: Sequence[int] | None, *,
                unmerged: bool = False) -> Iterator[Iterator[ReadFrame]]:
        """A pass: the frames at dataset ``indices`` (``columns`` selected; None keeps all), in order;
        ``unmerged``: each frame that fits its slot as its sources, read (:attr:`SlotFrame.layout`),
        the slots being ``dataset.load_dim`` wide.

        The frames handed out stay the consumer's until it releases them or the pass ends (leaving
        the ``with`` block): only then may the readers write their slots again, so a copy still
        reading a slot (e.g. the last batch's upload) must have finished before the block is left.
        Leaving early cancels what was read ahead.

        Raises:
            DatasetError, PointCloudError: while iterating, a reader's error for a frame that
                cannot be read, or a reader that stopped.
        """
        if self.closed:
            raise DatasetError("the frame readers were closed")
        if self.busy:
            raise DatasetError("a pass over these frame readers is still running")
        self.busy = True
        state = _Pass(self._next_position)
        try:
            yield self._frames(state, indices, columns, unmerged)
        finally:
            self._end_pass(state)

    def _frames(self, state: "_Pass", indices: Sequence[int], columns: Sequence[int] | None,
                unmerged: bool) -> Iterator[ReadFrame]:
        base, total = state.base, len(indices)
        wanted = None if columns is None else tuple(int(c) for c in columns)
        arrived: dict[int, _Message] = {}
        for position in range(base, base + total):
            while state.submitted < total and len(self._outstanding) < self.plan.count:
                task = _Task(base + state.submitted, int(indices[state.submitted]), wanted, unmerged)
                self._outstanding.add(task.position)
                state.awaited.add(task.position)
                self._tasks.put(task)
                state.submitted += 1
            if position >= base + state.submitted:
                raise DatasetError(f"the frame readers have {self.plan.count} slots and the consumer holds all of them")
            while position not in arrived:
                message = self._receive()
                state.awaited.discard(message.position)
                arrived[message.position] = message
            message = arrived.pop(position)
            if isinstance(message, _Failure):
                raise message.error
            if isinstance(message, _Crash):
                raise RuntimeError(f"a frame reader failed on frame position {position}:\n{message.text}")
            assert not isinstance(message, _Skipped)
            yield message

    def _end_pass(self, state: "_Pass") -> None:
        """Cancel what was read ahead, wait until no reader still works on the pass, free all its slots;
        the next pass starts at the first position not handed out (where the slots' tickets stand)."""
        end = state.base + state.submitted
        try:
            if self.slots is not None:
                self.slots.cancel(end)
            while state.awaited and not self.closed:
                state.awaited.discard(self._receive().position)
        except DatasetError:
            pass  # a reader stopped: the pool is closed already
        finally:
            self.release(range(state.base, end))
            self._next_position = end
            self.busy = False

    def _receive(self) -> _Message:
        """The next message from any reader; a reader that stopped closes the pool."""
        while True:
            try:
                return self._messages.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                stopped = [p for p in self._processes if not p.is_alive()]
                if stopped:
                    self.close()
                    raise DatasetError(f"frame reader process {stopped[0].name} stopped (exit code "
                                       f"{stopped[0].exitcode}): out of memory, or killed") from None

    def close(self) -> None:
        """Stop the readers and free the slots (a pass still running ends with an error)."""
        if self.closed:
            return
        self.closed = True
        if self.slots is not None:
            self.slots.close()
        for _ in self._processes:
            self._tasks.put(None)
        deadline = time.monotonic() + _JOIN_SECONDS
        for process in self._processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()
                process.join()
        for channel in (self._tasks, self._messages):
            channel.close()
            channel.cancel_join_thread()


def _allocate(plan: SlotPlan, context: multiprocessing.context.BaseContext) -> FrameSlots | None:
    """The slots of ``plan``, or None (with a warning) where torch cannot map that much shared memory."""
    try:
        return FrameSlots(plan.count, plan.rows, plan.width, context)
    except RuntimeError as exc:
        warnings.warn(f"the frame readers' slots could not be allocated ({exc}): frames are handed over the "
                      "slower default way", stacklevel=4)
        return None


def _reader_main(dataset: FrameDataset, slots: FrameSlots | None, tasks: multiprocessing.Queue,
                 messages: multiprocessing.Queue) -> None:
    """A reader process: read each task's frame into its slot (or the queue) until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process handles Ctrl-C and stops the readers
    torch.set_num_threads(1)
    keep_freed_memory()
    # the readers are the parallelism: numpy's BLAS would otherwise start a thread per core in every
    # reader, and its spinning threads take the other readers' cores
    with threadpool_limits(limits=1):
        _serve(dataset, slots, tasks, messages)


def _serve(dataset: FrameDataset, slots: FrameSlots | None, tasks: multiprocessing.Queue,
           messages: multiprocessing.Queue) -> None:
    """A reader's loop: each task's message, until the stop task or the main process's end."""
    parent = multiprocessing.parent_process()
    while True:
        try:
            task = tasks.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                return  # the main process is gone without closing the pool
            continue
        if task is None:
            return
        messages.put(_read(dataset, slots, task))


def _read(dataset: FrameDataset, slots: FrameSlots | None, task: _Task) -> _Message:
    """One task's message: the frame written to its slot or inline, or why not."""
    if slots is not None and slots.cancelled(task.position):
        return _Skipped(task.position)
    start = time.perf_counter()
    try:
        if task.unmerged and slots is not None:
            read = _read_unmerged(dataset, slots, task, start)
            if read is not None:
                return read
        frame = dataset[task.index]
    except FrameCancelled:
        return _Skipped(task.position)
    except CenterPointError as exc:
        return _Failure(task.position, exc)
    except Exception:  # noqa: BLE001 - a bug: the main process raises it with this traceback
        return _Crash(task.position, traceback.format_exc())
    points = frame.points
    columns = None if task.columns in (None, tuple(range(points.shape[1]))) else task.columns
    seconds = time.perf_counter() - start
    if slots is not None and slots.fits(len(points)) and not task.unmerged:  # unmerged slots are load_dim wide
        try:
            slots.write(task.position, points, columns)
        except FrameCancelled:
            return _Skipped(task.position)
        return SlotFrame(task.position, task.index, frame.token, len(points), seconds)
    return InlineFrame(task.position, task.index, frame.token, selected_columns(points, columns), seconds)


def _read_unmerged(dataset: FrameDataset, slots: FrameSlots, task: _Task, start: float) -> SlotFrame | None:
    """The frame's sources read straight into its slot (None: they do not fit; it is read merged then)."""
    layout = dataset.read_sources(task.index, slots.acquire(task.position))
    if layout is None:
        return None
    return SlotFrame(task.position, task.index, dataset.records[task.index].token, layout.raw_rows,
                     time.perf_counter() - start, layout)


def selected_columns(points: np.ndarray, columns: Sequence[int] | None) -> Tensor:
    """``Tensor[N, len(columns)]`` float32, contiguous and its own: ``points [N, D]``'s ``columns`` (None: all)."""
    chosen = points if columns is None else points[:, list(columns)]
    return torch.from_numpy(np.ascontiguousarray(chosen, dtype=np.float32))


_shared: ReaderPool | None = None


def shared_pool(dataset: FrameDataset, workers: int, plan: SlotPlan, with_slots: bool = True
                ) -> tuple[ReaderPool, bool]:
    """``(pool, shared)``: the process's shared pool when it serves this pass (started now when
    there is none, or it serves another dataset); a private pool (``shared`` False: close it after
    the pass) while the shared one runs another pass."""
    global _shared
    if _shared is not None and _shared.serves(dataset, workers, plan, with_slots):
        return _shared, True
    if _shared is not None and _shared.busy and not _shared.closed:
        return ReaderPool(dataset, workers, plan, with_slots=with_slots), False
    close_shared_pool()
    _shared = ReaderPool(dataset, workers, plan, with_slots=with_slots)
    return _shared, True


def close_shared_pool() -> None:
    """Stop the shared pool's readers (at exit, or when another dataset needs readers)."""
    global _shared
    if _shared is not None:
        _shared.close()
        _shared = None


atexit.register(close_shared_pool)
