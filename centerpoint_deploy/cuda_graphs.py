"""The one way this package records CUDA graphs.

:func:`capture` runs a body a few times on a side stream first (cuDNN plans, compilation,
allocator pools), then records it: as one graph, or cut into consecutive graphs at the names the
body reports through its hook (each stage its own graph, replayed one after another with a time
mark between them). Replaying rewrites the tensors the body returned at capture time in place.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

import torch

T = TypeVar("T")

#: What a body calls with a part's name when that part has ended.
Split = Callable[[str], None]


def _ignore(_: str) -> None:
    """The split of a body recorded whole."""


@dataclass
class Captured(Generic[T]):
    """Recorded graphs and what the body returned while recording.

    Attributes:
        graphs: ``(name, graph)`` in recording order; replaying them in order is one run of the body.
        result: the body's return value; its tensors live in the graphs' memory.
    """

    graphs: list[tuple[str, torch.cuda.CUDAGraph]]
    result: T

    def replay(self) -> None:
        """One run of the body (asynchronous, on the current stream)."""
        for _, graph in self.graphs:
            graph.replay()


def capture(body: Callable[[Split], T], device: torch.device, *, warmup: int = 3, segments: bool = False,
            last: str = "graph") -> Captured[T]:
    """Record ``body`` on ``device``.

    Args:
        body: the work; it may call its hook with a name after each part (stage).
        warmup: untimed runs of ``body`` on a side stream before recording.
        segments: one graph per part, named by the hook calls (the work after the last call is
            a graph named ``last``); ``False``: one graph named ``last``, the hook ignored.
    """
    current = torch.cuda.current_stream(device)
    side = torch.cuda.Stream(device)
    side.wait_stream(current)
    with torch.cuda.stream(side):
        for _ in range(warmup):
            body(_ignore)
    current.wait_stream(side)

    graphs: list[tuple[str, torch.cuda.CUDAGraph]] = []
    recording: list[torch.cuda.graph] = []

    def begin() -> None:
        graph = torch.cuda.CUDAGraph()
        # thread_local: a DataLoader's pin-memory thread allocating pinned host memory while this
        # thread records (evaluate captures a new batch size mid-loop) must not invalidate the capture
        recording.append(torch.cuda.graph(graph, capture_error_mode="thread_local"))
        recording[-1].__enter__()
        graphs.append(("", graph))

    def split(name: str) -> None:  # close the part that just ended, open the next
        recording.pop().__exit__(None, None, None)
        graphs[-1] = (name, graphs[-1][1])
        begin()

    begin()
    try:
        result = body(split if segments else _ignore)
    finally:
        with warnings.catch_warnings():  # a body ending with a split leaves an empty last graph
            warnings.filterwarnings("ignore", message=".*[Ee]mpty.*")
            recording.pop().__exit__(None, None, None)
    graphs[-1] = (last, graphs[-1][1])
    return Captured(graphs, result)


def quarter_octave(count: int) -> int:
    """The smallest multiple of a quarter of the power of two below ``count`` (>= 8) that holds it:
    the sizes (``2^k``, ``1.25 * 2^k``, ``1.5 * 2^k``, ``1.75 * 2^k``) graphs of varying inputs are
    captured for, each padded at most 1.25 times (a power of two: up to twice)."""
    quarter = 1 << ((count - 1).bit_length() - 3)
    return -(-count // quarter) * quarter
