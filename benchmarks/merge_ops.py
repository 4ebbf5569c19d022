"""Operators the device sweep merge dispatches for one frame (each one a launch from the loop's main thread)::

    PYTHONPATH=$PWD python3 benchmarks/merge_ops.py

Counts what :func:`~centerpoint_deploy.data.device_merge.merge_on_device` dispatches (view
operators, which launch nothing, counted apart) for a key frame and ``--sweeps`` moved sweeps
with the close points removed, on the CPU, and checks the result against the host merge bit for bit.
(A CUDA pass replays these operators as one graph per padded frame size: ``MergeGraphs``.)
"""

from __future__ import annotations

import argparse
import collections

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from centerpoint_deploy.data.device_merge import merge_on_device
from centerpoint_deploy.data.sweeps import raw_layout
from centerpoint_deploy.data.geometry import make_transform, yaw_to_quaternion
from centerpoint_deploy.data.sweeps import SweepOptions, merge_parts, merge_sources

#: Operators that only make views (no kernel).
VIEWS = {"view", "slice", "select", "unsqueeze", "squeeze", "expand", "t", "alias", "as_strided", "_unsafe_view",
         "detach", "lift_fresh"}


class _Counter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls[func.__name__.split(".")[0]] += 1
        return func(*args, **(kwargs or {}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweeps", type=int, default=1)
    parser.add_argument("--points", type=int, default=90_000, help="points per source")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    sources = [(rng.standard_normal((args.points, 5)) * 30).astype(np.float32) for _ in range(args.sweeps + 1)]
    motions = [(make_transform(yaw_to_quaternion(0.3 * k), [3.0 * k, 1.0, 0.0]), 0.1 * k)
               for k in range(1, args.sweeps + 1)]
    options = SweepOptions(sweeps_num=args.sweeps)
    parts = merge_parts(motions, options)
    layout = raw_layout(sources, parts, options.remove_close_radius)
    with _Counter() as counter:
        merged = merge_on_device(torch.from_numpy(np.concatenate(sources)), layout)
    host = merge_sources(sources, parts, options.remove_close_radius)
    views = sum(n for name, n in counter.calls.items() if name in VIEWS)
    print(f"{args.sweeps} moved sweep(s): {sum(counter.calls.values()) - views} operators that launch kernels, "
          f"{views} views; equal to the host merge bit for bit: "
          f"{np.array_equal(merged.numpy().view(np.int32), host.view(np.int32))}")
    print(dict(sorted(counter.calls.items())))


if __name__ == "__main__":
    main()
