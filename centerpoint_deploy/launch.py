"""The ranks of a ``torchrun`` launch, read from the environment it sets (standard library only,
so the command line can read them before it imports torch)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from centerpoint_deploy.errors import EvaluationError


@dataclass(frozen=True)
class LaunchRanks:
    """This process's place in its launch: ``(0, 1, 0)`` for a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_int(name: str) -> int | None:
    """Environment variable ``name`` as an integer, None when unset.

    Raises:
        EvaluationError: it is set but not an integer.
    """
    text = os.environ.get(name)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise EvaluationError(f"environment variable {name}={text!r} is not an integer") from None


def launch_ranks() -> LaunchRanks:
    """``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (``RANK`` where unset) of a ``torchrun`` launch
    (``WORLD_SIZE`` > 1), else :class:`LaunchRanks()` of a single process.

    Raises:
        EvaluationError: a variable is not an integer, or ``WORLD_SIZE`` is set without ``RANK``.
    """
    world = env_int("WORLD_SIZE") or 1
    if world <= 1:
        return LaunchRanks()
    rank, local_rank = env_int("RANK"), env_int("LOCAL_RANK")
    if rank is None:
        raise EvaluationError("WORLD_SIZE is set but RANK is not; start the ranks with torchrun")
    return LaunchRanks(rank, world, local_rank if local_rank is not None else rank)
