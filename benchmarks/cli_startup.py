"""Start-up time of the command line: ``centerpoint-deploy --help`` and every ``<command> --help``.

Runs each command line ``--repeat`` times in a fresh interpreter (``python3 -m
centerpoint_deploy ...`` from the working directory) and prints the median and the slowest
wall time, plus the median CPU time (user + sys) of the child, which is less disturbed by
other load on the machine. Usage::

    python3 benchmarks/cli_startup.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

COMMANDS = ["", "deploy", "export", "build-engine", "detect", "verify", "evaluate", "score", "benchmark", "synth",
            "train", "config", "config show", "config presets"]


def measure(args: list[str], repeat: int) -> tuple[float, float, float]:
    """Median wall, slowest wall and median child CPU seconds of ``python3 -m centerpoint_deploy ARGS --help``."""
    walls, cpus = [], []
    for _ in range(repeat):
        before = os.times()
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "centerpoint_deploy", *args, "--help"], check=True,
                       stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - start)
        after = os.times()
        cpus.append(after.children_user - before.children_user + after.children_system - before.children_system)
    return statistics.median(walls), max(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    repeat = parser.parse_args().repeat
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{repeat} runs each")
    print("| command | median wall (s) | slowest wall (s) | median CPU (s) |")
    print("|---|---:|---:|---:|")
    for command in COMMANDS:
        wall, worst, cpu = measure(command.split(), repeat)
        print(f"| `centerpoint-deploy {command + ' ' if command else ''}--help` | {wall:.2f} | {worst:.2f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()
