"""Terminal output of the CLI and the main job (rich): consoles that print text as written,
and progress bars with an ETA driven by :data:`centerpoint_deploy.progress.Progress` callbacks.

Only the CLI and the job import this module; the stages report through the callback.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress, TaskID, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

from centerpoint_deploy.progress import Progress


def plain_console(*, stderr: bool = True, width: int | None = None) -> Console:
    """A console that prints strings as written: no markup (text in ``[...]`` stays), no highlighting."""
    return Console(stderr=stderr, markup=False, highlight=False, width=width)


@contextlib.contextmanager
def progress_bars(console: Console) -> Iterator[Progress]:
    """A :data:`Progress` callback drawing one bar per step (done/total, elapsed, ETA) on ``console``.

    Bars stay on screen when done; on a non-terminal console (a log, a pipe) rich prints them
    once at the end instead of redrawing.
    """
    columns = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    tasks: dict[str, TaskID] = {}
    with RichProgress(*columns, console=console, transient=False) as bars:

        def report(step: str, done: int, total: int | None) -> None:
            if step not in tasks:
                tasks[step] = bars.add_task(step, total=total)
            bars.update(tasks[step], completed=done, total=total)

        yield report
