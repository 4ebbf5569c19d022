"""The ``centerpoint-deploy`` command line: thin commands over the library.

Each command lives in its own module of this package and calls library functions; this
module assembles them (the command modules never import it back). Command modules import
torch, onnx, matplotlib and the runtimes only inside the command that runs, so ``--help``
is fast.

User errors print one ``error:`` line and exit 1: a :class:`CenterPointError` from the
library, and a bad command line (unknown option, a value out of range, a missing option).
Python warnings raised while a command runs are printed after it, once each, so an error
line is always the first line of a failed run. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
import warnings
from collections import Counter
from typing import Sequence

import typer

from centerpoint_deploy.cli import (benchmark, bundle, calibrate, config_cmd, deploy, detect, evaluate, export, synth,
                                    train, verify)
from centerpoint_deploy.cli.common import TYPER_SETTINGS
from centerpoint_deploy.errors import CenterPointError

PROG = "centerpoint-deploy"
#: The command-line parser's exceptions (click's, which typer >= 0.24 vendors as ``typer._click``).
_PARSER_ERRORS = sys.modules[typer.BadParameter.__module__]

app = typer.Typer(name=PROG, help="Export, run, verify, evaluate and benchmark CenterPoint LiDAR detectors.",
                  **TYPER_SETTINGS)
app.command("deploy")(deploy.deploy)
app.command("export")(export.export)
app.command("build-engine")(export.build_engine)
app.command("detect")(detect.detect)
app.command("verify")(verify.verify)
app.command("evaluate")(evaluate.evaluate)
app.command("score")(evaluate.score)
app.command("benchmark")(benchmark.benchmark)
app.command("synth")(synth.synth_command)
app.command("train")(train.train_command)
app.command("calibrate-thresholds")(calibrate.calibrate_thresholds_command)
app.add_typer(config_cmd.config_app, name="config")
app.add_typer(bundle.bundle_app, name="bundle")


def _error(message: str) -> None:
    typer.secho("error:", fg="red", bold=True, err=True, nl=False)
    typer.echo(" " + " ".join(message.split()), err=True)


def _usage_message(exc: Exception) -> str:
    """A bad command line as one sentence, with where to read the options."""
    message = exc.format_message().rstrip(".")
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else PROG
    return f"{message[:1].lower()}{message[1:]}; see '{command} --help'"


def _show_warnings(caught: list[warnings.WarningMessage]) -> None:
    for text, count in Counter(f"{w.category.__name__}: {w.message}" for w in caught).items():
        typer.secho("warning:", fg="yellow", err=True, nl=False)
        typer.echo(f" {' '.join(text.split())}" + (f" (x{count})" if count > 1 else ""), err=True)


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    with warnings.catch_warnings(record=True) as caught:
        try:
            status = app(args=None if argv is None else list(argv), prog_name=PROG, standalone_mode=False)
        except _PARSER_ERRORS.NoArgsIsHelpError as exc:
            typer.echo(exc.ctx.get_help())
            status = 0
        except _PARSER_ERRORS.ClickException as exc:
            _error(_usage_message(exc))
            status = 1
        except typer.Abort:
            _error("interrupted")
            status = 130
        except CenterPointError as exc:
            _error(str(exc))
            status = 1
    _show_warnings(caught)
    return status if isinstance(status, int) else 0


def prepare_process() -> None:
    """This process's settings for a command: the entry point's, and the benchmark scripts' that time
    what a command does."""
    from centerpoint_deploy.compile_cache import use_persistent_compile_cache
    from centerpoint_deploy.memory import keep_freed_memory

    use_persistent_compile_cache()  # torch.compile reuses earlier runs' kernels
    keep_freed_memory()  # large CPU blocks are reused, not faulted in again on every frame or pass


def main() -> None:
    """Entry point of the ``centerpoint-deploy`` script."""
    prepare_process()
    sys.exit(run())
