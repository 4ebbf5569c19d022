"""The main job (``centerpoint-deploy deploy``, no arguments but ``--out``) in fresh processes, with
the command line's process settings and with glibc's default allocator settings::

    PYTHONPATH=$PWD python3 benchmarks/main_job_ab.py [--repeat 2]

- ``entry-point``: ``python3 -m centerpoint_deploy deploy``, as the README runs it (the process
  keeps its freed memory: :func:`~centerpoint_deploy.memory.keep_freed_memory`);
- ``glibc-defaults``: the same command through :func:`~centerpoint_deploy.cli.app.run` with only
  the compile cache set, so ``malloc`` maps and unmaps every large block.

Prints, per run, the wall-clock, user and system CPU seconds of the whole process, each step's
``done in`` seconds and the two backends' p50 latency, the ways interleaved ``--repeat`` times
(the sample dataset is generated before the first run, so no run pays for it).
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_GLIBC_DEFAULTS = ("import sys; from centerpoint_deploy.cli.app import run; "
                   "from centerpoint_deploy.compile_cache import use_persistent_compile_cache; "
                   "use_persistent_compile_cache(); sys.exit(run(sys.argv[1:]))")
WAYS = {"entry-point": ["-m", "centerpoint_deploy"], "glibc-defaults": ["-c", _GLIBC_DEFAULTS]}


def _timed(command: list[str]) -> tuple[float, float, float, str]:
    """Wall, user and system seconds of ``command`` (a child process) and its output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    begin = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - begin
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime, run.stdout + run.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    from centerpoint_deploy.data.sample import default_sample_dir

    default_sample_dir()  # generated once, before the timed runs
    print("| way | wall s | user s | sys s | steps 3-9 (done in s) | p50 pytorch / onnxruntime ms |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeat):
            for way, prefix in WAYS.items():
                out = Path(tmp) / f"{way}-{repeat}"
                wall, user, system, output = _timed([sys.executable, *prefix, "deploy", "--out", str(out)])
                steps = " ".join(re.findall(r"done in ([0-9.]+) s", output)[2:])
                p50 = " / ".join(re.findall(r"│ (?:pytorch|onnxruntime) .*│ +([0-9.]+) │", output))
                print(f"| {way} | {wall:.1f} | {user:.1f} | {system:.1f} | {steps} | {p50} |", flush=True)


if __name__ == "__main__":
    main()
