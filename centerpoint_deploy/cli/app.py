"""The ``centerpoint-deploy`` command line: thin commands over the library.

Each command lives in its own module of this package and calls one library function.
User errors (:class:`CenterPointError`) print one line and exit 1; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from centerpoint_deploy.compile_cache import use_persistent_compile_cache
from centerpoint_deploy.errors import CenterPointError

app = typer.Typer(
    name="centerpoint-deploy",
    help="Export, run, verify, evaluate and benchmark CenterPoint LiDAR detectors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Each command module adds its command(s) to ``app`` when imported.
from centerpoint_deploy.cli import detect  # noqa: E402,F401
from centerpoint_deploy.cli import train  # noqa: E402,F401
from centerpoint_deploy.cli import benchmark  # noqa: E402,F401
from centerpoint_deploy.cli import verify  # noqa: E402,F401
from centerpoint_deploy.cli import config_cmd  # noqa: E402,F401
from centerpoint_deploy.cli import evaluate  # noqa: E402,F401
from centerpoint_deploy.cli import synth  # noqa: E402,F401
from centerpoint_deploy.cli import export  # noqa: E402,F401
from centerpoint_deploy.cli import deploy  # noqa: E402,F401
from centerpoint_deploy.cli import bundle  # noqa: E402,F401


def main() -> None:
    """Entry point of the ``centerpoint-deploy`` script."""
    use_persistent_compile_cache()  # torch.compile reuses earlier runs' kernels
    try:
        app()
    except CenterPointError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
        sys.exit(1)
