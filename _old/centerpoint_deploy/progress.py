"""Progress of long steps, reported through a plain callback so the stages need no terminal library.

A stage that can take more than a few seconds accepts ``progress: Progress | None`` and calls
``progress(step, done, total)`` as units of work finish (``total`` ``None`` when unknown).
The CLI and the main job turn the calls into progress bars with an ETA
(:func:`centerpoint_deploy.terminal.progress_bars`, rich); library callers pass ``None`` or
their own callable. Only the standard library: any layer may import this module.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Optional, TypeVar

#: ``progress(step, done, total)``: ``done`` of ``total`` units of ``step`` have finished.
Progress = Callable[[str, int, Optional[int]], None]
_T = TypeVar("_T")


def track(items: Iterable[_T], step: str, progress: Progress | None, total: int | None = None) -> Iterator[_T]:
    """Yield ``items``, reporting ``step`` as started before the first and one more done after each.

    ``total`` defaults to ``len(items)`` when the items have a length.
    """
    if progress is None:
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    progress(step, 0, total)
    for done, item in enumerate(items, 1):
        yield item
        progress(step, done, total)
