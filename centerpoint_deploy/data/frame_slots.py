"""Shared-memory slots that reader processes write frames into and the main process reads in place.

Handing a 3.7 MB frame from a ``DataLoader`` worker to the main process the default way costs a
fresh shared-memory segment per frame: the worker copies the frame into it and faults its pages
in, the main process maps it, and a pinning thread copies it once more. On the 2-core CPU one
worker delivered 158-170 frames/s of 188,000 points that way, and the main thread spent 1.5-3.4
ms taking each; through slots (the host's own copy of each frame included) 240-296 frames/s and
0.6-2.5 ms (``benchmarks/read_frames.py --loader``). :class:`FrameSlots` is allocated once per pass over
the frames; each slot's pages are faulted in once and reused, and on CUDA the slots are
page-locked in place, so a frame goes from the reader's write straight to the device copy.

The frame at position ``p`` (positions count up over every pass of the readers that share
the slots, :mod:`~centerpoint_deploy.data.readers`) goes into slot ``p % count`` once the slot's
previous frame (position ``p - count``) was released by the main process: each slot holds a
ticket, the one position allowed to write it next, and a semaphore that wakes a reader waiting
for it. Tickets only move forward, so a reader never overwrites a frame still in use, whatever
order the readers run in. A pass that ends early cancels its remaining positions: a reader
waiting to write one of them gives up (:class:`FrameCancelled`).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from centerpoint_deploy.errors import DatasetError

#: Seconds a waiting reader sleeps between checks that the main process is still there.
_POLL_SECONDS = 0.5
#: Above every position (cancelling below it closes the slots).
_NO_POSITION = 2**62


class FrameCancelled(Exception):
    """The main process cancelled the position a reader was about to write (its pass ended early)."""


class FrameSlots:
    """``count`` buffers of ``rows x width`` float32 points in shared memory, reused frame after frame.

    Args:
        count: slots (at least the frames the main process holds at once plus the frames read ahead).
        rows: points a slot holds; a larger frame is handed over the default way.
        width: floats per point.
        context: the multiprocessing context the readers are started with.

    Attributes:
        points: ``Tensor[count, rows, width]`` float32 in shared memory.
    """

    def __init__(self, count: int, rows: int, width: int, context: multiprocessing.context.BaseContext) -> None:
        if count < 1 or rows < 1 or width < 1:
            raise DatasetError(f"frame slots need count, rows and width >= 1; got {count}, {rows}, {width}")
        self.points = torch.empty((count, rows, width), dtype=torch.float32).share_memory_()
        self._tickets = context.Array("q", range(count), lock=False)  # slot s: the position that may write it next
        self._cancelled_below = context.Value("q", 0, lock=False)  # positions below it are not read
        # one wake-up per slot: releasing never waits (a Condition's notify waits for every woken
        # process to acknowledge, a round trip per waiter on each frame); the ticket says who may write
        self._freed = [context.Semaphore(0) for _ in range(count)]
        self._pinned = False

    @property
    def count(self) -> int:
        return self.points.shape[0]

    @property
    def rows(self) -> int:
        return self.points.shape[1]

    def fits(self, rows: int) -> bool:
        return rows <= self.rows

    def write(self, position: int, points: np.ndarray, columns: Sequence[int] | None) -> None:
        """(Reader process) Copy ``points[:, columns]`` (``ndarray[n, D]``, ``n <= rows``) into
        ``position``'s slot, once the slot is free (:meth:`acquire`).

        Raises:
            FrameCancelled: the main process cancelled ``position`` (or closed the slots) meanwhile.
        """
        target = self.acquire(position)[: points.shape[0]]
        if columns is None:
            target[...] = points
        else:
            np.take(points, list(columns), axis=1, out=target, mode="clip")  # "clip": written in place, unbuffered

    def acquire(self, position: int) -> np.ndarray:
        """(Reader process) ``ndarray[rows, width]``: ``position``'s slot to write, once it is free.

        Raises:
            FrameCancelled: the main process cancelled ``position`` (or closed the slots) meanwhile.
        """
        slot = position % self.count
        while self._tickets[slot] != position:  # a spurious wake-up (an earlier release) just looks again
            if self.cancelled(position):
                raise FrameCancelled
            if self._tickets[slot] > position:
                raise DatasetError(f"frame slot {slot} was handed out past position {position}")
            if not self._freed[slot].acquire(timeout=_POLL_SECONDS):
                parent = multiprocessing.parent_process()
                if parent is not None and not parent.is_alive():
                    raise FrameCancelled
        return self.points[slot].numpy()

    def cancelled(self, position: int) -> bool:
        """Whether the main process no longer wants the frame at ``position``."""
        return position < self._cancelled_below.value

    def cancel(self, below: int) -> None:
        """(Main process) Positions under ``below`` will not be read: wake the readers waiting to write one.
        Their slots are released only once no reader can still be writing them."""
        self._cancelled_below.value = max(self._cancelled_below.value, below)
        for freed in self._freed:
            freed.release()

    def view(self, position: int, rows: int) -> Tensor:
        """(Main process) ``Tensor[rows, width]``: the frame at ``position``, in its slot (valid until released)."""
        return self.points[position % self.count, :rows]

    def release(self, positions: Sequence[int]) -> None:
        """(Main process) The frames at ``positions`` are no longer read: their slots may take the next frames."""
        for position in positions:
            slot = position % self.count
            self._tickets[slot] = position + self.count
            self._freed[slot].release()

    def pin(self) -> bool:
        """(Main process) Page-lock the slots in place for asynchronous copies to CUDA (once; they stay
        locked until :meth:`close`); False when the driver refuses (then the copies are synchronous:
        correct, slower)."""
        if self._pinned:
            return True
        nbytes = self.points.numel() * self.points.element_size()
        # the binding returns a cudaError_t enum (not an int): 0 is success
        self._pinned = int(torch.cuda.cudart().cudaHostRegister(self.points.data_ptr(), nbytes, 0)) == 0
        return self._pinned

    def close(self) -> None:
        """(Main process) Wake and stop every waiting reader; unpin. Call after the last copy finished."""
        self.cancel(_NO_POSITION)
        if self._pinned:
            torch.cuda.cudart().cudaHostUnregister(self.points.data_ptr())
            self._pinned = False
