"""How long a reader takes to read one frame (key frame and sweeps merged), with and without
:func:`~centerpoint_deploy.data.memory.keep_freed_memory`, each in a fresh process::

    PYTHONPATH=$PWD python3 benchmarks/read_frames.py --frames 40 --sweeps 1

Generates a synthetic T4 scene (the default 64-beam sensor, ~188,000 points a frame with one
sweep) in a temporary folder, then reads every frame ``--passes`` times per process and prints
the p50 per frame.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path


def _read(folder: str, sweeps: int, passes: int, keep: bool) -> float:
    """p50 ms per frame read in this (fresh) process."""
    from centerpoint_deploy.config import load_config
    from centerpoint_deploy.data import open_dataset
    from centerpoint_deploy.data.memory import keep_freed_memory

    if keep:
        keep_freed_memory()
    config = load_config("demo")
    dataset = open_dataset(Path(folder), class_names=config.class_names, sweeps_num=sweeps,
                           load_dim=config.points.load_dim)
    dataset[0]
    times = []
    for _ in range(passes):
        for index in range(len(dataset)):
            begin = time.perf_counter()
            dataset[index]
            times.append((time.perf_counter() - begin) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--sweeps", type=int, default=1)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    from centerpoint_deploy.data.synthetic import LidarConfig, WorldConfig, generate_dataset

    with tempfile.TemporaryDirectory() as tmp:
        generate_dataset(tmp, 1, args.frames, 0, LidarConfig(), WorldConfig(), key_frame_interval=5,
                         lead_in_sweeps=max(args.sweeps, 1))
        spawn = multiprocessing.get_context("spawn")
        print("| reader | ms a frame (p50) |\n|---|---|")
        for keep in (False, True):
            with spawn.Pool(1) as pool:
                ms = pool.apply(_read, (tmp, args.sweeps, args.passes, keep))
            print(f"| {'keeps its freed memory' if keep else 'glibc defaults'} | {ms:.2f} |", flush=True)


if __name__ == "__main__":
    main()
