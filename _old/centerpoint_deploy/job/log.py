"""The main job's log: everything printed goes to the terminal and, as plain text, to a file."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

from rich.console import Console

#: Width of the log file's text (wide enough for the verification tables).
LOG_WIDTH = 150


class JobLog:
    """Prints to a terminal :class:`Console` and appends the same output, without colour, to ``path``.

    Use as a context manager; the file is opened in append mode so a re-run into the same
    folder keeps the earlier runs' lines.
    """

    def __init__(self, console: Console, path: Path) -> None:
        self.console = console
        self.path = path
        self._file: IO[str] | None = None
        self._file_console: Console | None = None

    def __enter__(self) -> "JobLog":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        self._file_console = Console(file=self._file, width=LOG_WIDTH, color_system=None, force_terminal=False,
                                     highlight=False, soft_wrap=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
        self._file, self._file_console = None, None

    @property
    def consoles(self) -> tuple[Console, ...]:
        """The terminal console and, while open, the file's console (for renderers that take one)."""
        return (self.console,) if self._file_console is None else (self.console, self._file_console)

    def print(self, *objects: Any, **kwargs: Any) -> None:
        """``Console.print`` on both outputs."""
        for console in self.consoles:
            console.print(*objects, **kwargs)
        if self._file is not None:
            self._file.flush()

    def to_file(self, *objects: Any) -> None:
        """Print to the log file only (e.g. an error the CLI reports on the terminal itself)."""
        if self._file_console is not None:
            self._file_console.print(*objects)
            self._file.flush()

    def rule(self, title: str) -> None:
        """A titled horizontal rule on both outputs."""
        for console in self.consoles:
            console.rule(title, align="left")
