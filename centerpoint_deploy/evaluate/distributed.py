"""Ranks of a ``torchrun`` launch: which frames each one runs, where, and how they exchange results.

``torchrun --nproc_per_node N -m centerpoint_deploy evaluate ...`` starts N processes with
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set; :func:`rank_group` turns them into a
:class:`RankGroup` (a gloo process group: only Python objects are exchanged, so gloo serves
CPU and GPU runs alike). Without those variables the group is the single process itself and
nothing is initialised.

Rules every command run under ``torchrun`` follows:

- frames are sharded contiguously: rank ``r`` of ``W`` runs positions
  ``[r * n // W, (r + 1) * n // W)`` of the evaluated frames (:meth:`RankGroup.shard`);
- a rank computes on ``cuda:LOCAL_RANK`` when the device is CUDA (:meth:`RankGroup.device`),
  so ONNX Runtime gets ``device_id = LOCAL_RANK`` and TensorRT its own GPU;
- every rank takes part in the same sequence of :meth:`RankGroup.exchange` calls (an
  ``all_gather_object`` of an outcome: a value or an error); rank 0 alone writes files;
- a rank that fails sends its error in place of its next exchange (:meth:`RankGroup.fail`,
  done by ``with rank_group() as group:``); every rank then raises :class:`RankFailedError`
  naming the failed rank and its error, so rank 0's terminal shows it and every process exits
  non-zero. The failing rank also posts its error in the launch's key-value store, which the
  other ranks look at between frames (:meth:`RankGroup.check`, at most twice a second), so
  they stop their share of the loop early instead of finishing it. The process group has a timeout (``CENTERPOINT_DIST_TIMEOUT`` seconds, default
  1800): a rank that dies without a word (killed, out of memory) cannot hang the others
  beyond it (``torchrun`` itself stops the other ranks when one exits non-zero).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence, TypeVar

import torch

from centerpoint_deploy.errors import CenterPointError, EvaluationError, RankFailedError
from centerpoint_deploy.launch import env_int, launch_ranks

#: Environment variable: seconds a rank waits for the others in one exchange.
TIMEOUT_ENV = "CENTERPOINT_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800.0
#: Seconds between two looks at the store for another rank's failure.
CHECK_INTERVAL_S = 0.5
_FAILED_KEY = "centerpoint_deploy/failed"
_T = TypeVar("_T")


@dataclass(frozen=True)
class _Outcome:
    """What one rank contributes to an exchange: a value, or the error that stopped it."""

    rank: int
    value: Any = None
    error: str | None = None


class RankGroup:
    """This process's place among the ranks of one run (see the module doc).

    Attributes:
        rank, world_size, local_rank: as ``torchrun`` set them (0, 1, 0 for a single process).
    """

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0, store: Any = None) -> None:
        if not 0 <= rank < world_size or local_rank < 0:
            raise EvaluationError(f"rank {rank} / world size {world_size} / local rank {local_rank} are inconsistent")
        self.rank = rank
        self.world_size = world_size
        self.local_rank = local_rank
        self._store = store  # torch.distributed.Store (set/check/get) shared by the ranks, or None
        self._stopped = False  # an exchange saw an error, or the last one is done: no one waits any more
        self._checked = 0.0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that scores, writes files and prints results."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, items: Sequence[_T]) -> list[_T]:
        """This rank's contiguous share of ``items`` (shares differ in length by at most one)."""
        n = len(items)
        return list(items[self.rank * n // self.world_size:(self.rank + 1) * n // self.world_size])

    def device(self, device: torch.device | str) -> torch.device:
        """The device this rank computes on: a bare ``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None and self.distributed:
            if self.local_rank >= torch.cuda.device_count():
                raise EvaluationError(f"local rank {self.local_rank} has no GPU of its own: "
                                      f"{torch.cuda.device_count()} visible; start at most that many processes per node")
            return torch.device("cuda", self.local_rank)
        return device

    def exchange(self, value: Any, *, last: bool = False) -> list[Any]:
        """Every rank's ``value``, by rank (``[value]`` for a single process).

        ``last``: no exchange follows in this run (a rank failing afterwards has no one to tell).

        Raises:
            RankFailedError: a rank sent an error instead of its value.
        """
        if not self.distributed:
            return [value]
        outcomes = self._gather(_Outcome(self.rank, value))
        failed = [o for o in outcomes if o.error is not None]
        if failed or last:
            self._stopped = True
        if failed:
            raise RankFailedError("; ".join(f"rank {o.rank} failed: {o.error}" for o in failed))
        return [o.value for o in outcomes]

    def check(self) -> None:
        """Raise :class:`RankFailedError` if another rank has posted a failure (looked up at most
        every :data:`CHECK_INTERVAL_S`; a no-op for a single process)."""
        if self._store is None or time.monotonic() - self._checked < CHECK_INTERVAL_S:
            return
        self._checked = time.monotonic()
        if self._store.check([_FAILED_KEY]):
            raise RankFailedError(self._store.get(_FAILED_KEY).decode())

    def fail(self, exc: BaseException) -> None:
        """Tell ranks waiting in (or heading for) an exchange that this rank stopped with ``exc``."""
        if not self.distributed or self._stopped:
            return
        self._stopped = True
        if self._store is not None and not isinstance(exc, RankFailedError):
            with contextlib.suppress(Exception):  # the store is a courtesy; the exchange below decides
                self._store.set(_FAILED_KEY, f"rank {self.rank} failed: {_describe(exc)}")
        try:
            self._gather(_Outcome(self.rank, error=_describe(exc)))
        except Exception:  # the others are gone already; this rank's own error is what matters now
            pass

    def _gather(self, outcome: _Outcome) -> list[_Outcome]:
        outcomes: list[Any] = [None] * self.world_size
        try:
            torch.distributed.all_gather_object(outcomes, outcome)
        except RuntimeError as exc:  # a peer died or the timeout passed
            self._stopped = True
            raise RankFailedError(f"rank {self.rank}: lost the other ranks ({str(exc).splitlines()[0]})") from exc
        return outcomes


def _describe(exc: BaseException) -> str:
    """One line for another rank's terminal: a user error's message, else the exception's type and text."""
    if isinstance(exc, CenterPointError):
        text = str(exc)
    elif isinstance(exc, SystemExit):
        text = f"exited with status {exc.code}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return text or type(exc).__name__


def timeout_seconds() -> float:
    """The exchange timeout: ``CENTERPOINT_DIST_TIMEOUT`` (seconds, > 0) or :data:`DEFAULT_TIMEOUT_S`."""
    text = os.environ.get(TIMEOUT_ENV)
    if text is None:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise EvaluationError(f"{TIMEOUT_ENV}={text!r} is invalid: must be a number of seconds > 0")
    return value


def _launch_store(timeout: datetime.timedelta) -> Any:
    """A client of the key-value store the process group was set up through (``MASTER_ADDR``:
    ``MASTER_PORT``: torchrun's agent store, or rank 0's), or None where there is none to reach."""
    address, port = os.environ.get("MASTER_ADDR"), env_int("MASTER_PORT")
    if not address or port is None:
        return None
    try:
        return torch.distributed.TCPStore(address, port, is_master=False, timeout=timeout, wait_for_workers=False)
    except (RuntimeError, ValueError):
        return None


@contextmanager
def rank_group() -> Iterator[RankGroup]:
    """The :class:`RankGroup` of this launch for the duration of one command.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) initialises the gloo process group from the
    environment and destroys it afterwards; an exception leaving the block is first sent to
    the other ranks (:meth:`RankGroup.fail`), and a block that ends normally waits for every
    rank to end it too (a last exchange, so a rank failing after the others finished still
    makes every rank exit non-zero). A single process gets ``RankGroup()``.
    """
    ranks = launch_ranks()
    if not ranks.distributed:
        yield RankGroup()
        return
    timeout = datetime.timedelta(seconds=timeout_seconds())
    torch.distributed.init_process_group("gloo", rank=ranks.rank, world_size=ranks.world_size, timeout=timeout)
    group = RankGroup(ranks.rank, ranks.world_size, ranks.local_rank, _launch_store(timeout))
    if torch.cuda.is_available() and group.local_rank < torch.cuda.device_count():
        torch.cuda.set_device(group.local_rank)
    try:
        yield group
        group.exchange(None, last=True)  # all done: a failure after the last results exchange reaches every rank
    except SystemExit as exc:
        if exc.code not in (None, 0):
            group.fail(exc)
        raise
    except BaseException as exc:
        group.fail(exc)
        raise
    finally:
        torch.distributed.destroy_process_group()
