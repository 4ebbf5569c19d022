"""How long a reader takes to read one frame (key frame and sweeps merged), with and without
:func:`~centerpoint_deploy.memory.keep_freed_memory`, each in a fresh process; with
``--loader``, what :class:`~centerpoint_deploy.data.loader.FrameLoader` delivers::

    PYTHONPATH=$PWD python3 benchmarks/read_frames.py --frames 40 --sweeps 1
    PYTHONPATH=$PWD python3 benchmarks/read_frames.py --frames 40 --sweeps 1 --loader --workers 1 2

Generates a synthetic T4 scene (the default 64-beam sensor, ~188,000 points a frame with one
sweep) in a temporary folder, then reads every frame ``--passes`` times per process and prints
the p50 per frame. ``--loader`` prints, per number of reader processes, the frames/s of a
consumer that takes frames as fast as they come, and the main thread's time to take a frame
when the readers are ahead (a consumer that spends ``--consumer-ms`` on each frame): the
hand-off's own cost, which the main thread of ``evaluate`` pays per frame; and the time to a pass's
first batch, for the first pass (the readers start) and the next (the readers are kept).
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np


def _read(folder: str, sweeps: int, passes: int, keep: bool, unmerged: bool = False) -> float:
    """p50 ms per frame read in this (fresh) process (``unmerged``: only its sources, into one buffer,
    as a reader does for a CUDA pass, which merges them after the upload)."""
    from centerpoint_deploy.config import load_config
    from centerpoint_deploy.data import open_dataset
    from centerpoint_deploy.memory import keep_freed_memory

    if keep:
        keep_freed_memory()
    config = load_config("demo")
    dataset = open_dataset(Path(folder), class_names=config.class_names, sweeps_num=sweeps,
                           load_dim=config.points.load_dim)
    buffer = np.empty((max(dataset.rows_bound(i) for i in range(len(dataset))), dataset.load_dim), np.float32)
    dataset.read_sources(0, buffer) if unmerged else dataset[0]
    times = []
    for _ in range(passes):
        for index in range(len(dataset)):
            begin = time.perf_counter()
            dataset.read_sources(index, buffer) if unmerged else dataset[index]
            times.append((time.perf_counter() - begin) * 1e3)
    return statistics.median(times)


def _loader(folder: str, sweeps: int, passes: int, workers: int, consumer_ms: float,
            device: str) -> tuple[float, float, float, float]:
    """(frames/s taken as fast as they come once the readers started, p50 ms the main thread spends taking a frame while the
    readers are ahead, ms to the first batch of the first pass (the readers start) and of the second (they are kept)),
    in this (fresh) process."""
    from centerpoint_deploy.config import load_config
    from centerpoint_deploy.data import open_dataset
    from centerpoint_deploy.data.loader import FrameLoader

    config = load_config("demo")
    dataset = open_dataset(Path(folder), class_names=config.class_names, sweeps_num=sweeps,
                           load_dim=config.points.load_dim)
    order = list(range(len(dataset))) * passes
    columns = list(config.points.use_dim)
    begin = time.perf_counter()
    batches = iter(FrameLoader(dataset, order, columns, workers=workers, device=device))
    next(batches)  # the readers have started
    first_pass = (time.perf_counter() - begin) * 1e3
    begin = time.perf_counter()
    for _ in batches:
        pass
    rate = (len(order) - 1) / (time.perf_counter() - begin)
    taking = []
    begin = time.perf_counter()
    batches = iter(FrameLoader(dataset, order, columns, workers=workers, device=device))
    next(batches)
    next_pass = (time.perf_counter() - begin) * 1e3
    while True:
        time.sleep(consumer_ms / 1e3)
        begin = time.perf_counter()
        if next(batches, None) is None:
            break
        taking.append((time.perf_counter() - begin) * 1e3)
    return rate, statistics.median(taking), first_pass, next_pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--sweeps", type=int, default=1)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--loader", action="store_true", help="time FrameLoader instead of one reader")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--consumer-ms", type=float, default=10.0)
    parser.add_argument("--device", default="cpu", help="--loader's device (on cuda the sweeps are merged there)")
    args = parser.parse_args()
    from centerpoint_deploy.data.synthetic import LidarConfig, WorldConfig, generate_dataset

    with tempfile.TemporaryDirectory() as tmp:
        generate_dataset(tmp, 1, args.frames, 0, LidarConfig(), WorldConfig(), key_frame_interval=5,
                         lead_in_sweeps=max(args.sweeps, 1))
        spawn = multiprocessing.get_context("spawn")
        if args.loader:
            print("| reader processes | frames/s, taken as they come | ms to take a frame, readers ahead (p50) "
                  "| ms to the first batch: first pass, next pass |\n|---|---|---|---|")
            for workers in args.workers:
                # forked, so that the readers start as in the command-line tool; not daemonic: it starts readers
                with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
                    rate, taking, first, later = pool.submit(_loader, tmp, args.sweeps, args.passes, workers,
                                                             args.consumer_ms, args.device).result()
                print(f"| {workers} | {rate:.0f} | {taking:.3f} | {first:.1f}, {later:.1f} |", flush=True)
            return
        print("| reader | ms a frame (p50) |\n|---|---|")
        for keep, unmerged in ((False, False), (True, False), (True, True)):
            with spawn.Pool(1) as pool:
                ms = pool.apply(_read, (tmp, args.sweeps, args.passes, keep, unmerged))
            label = "keeps its freed memory" if keep else "glibc defaults"
            print(f"| {label + (', sources only (merged on the device)' if unmerged else '')} | {ms:.2f} |", flush=True)


if __name__ == "__main__":
    main()
