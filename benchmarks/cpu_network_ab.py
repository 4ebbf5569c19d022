"""The strict PyTorch reference network on the CPU three ways, each in a fresh process::

    PYTHONPATH=$PWD python3 benchmarks/cpu_network_ab.py [--config demo] [--runs 5] [--repeat 2]

- ``nchw``: contiguous NCHW, glibc's default allocator settings (the library imported on its own);
- ``kept-memory``: the same, with the process keeping its freed memory
  (:func:`~centerpoint_deploy.memory.keep_freed_memory`, as the command line and the readers run);
- ``channels-last``: the model and its input in channels-last.

Prints each way's median ms of ``--runs`` timed ``forward_dense`` calls (after one untimed) on a
synthetic BEV canvas (10 % of cells filled, the demo checkpoint's weights for the demo config,
random ones otherwise), and whether its outputs equal the ``nchw`` outputs bit for bit.
``--repeat`` runs the set that many times (the ways interleaved: this machine's noise shows).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WAYS = ("nchw", "kept-memory", "channels-last")


def _child(way: str, config_name: str, runs: int, out: Path) -> None:
    """Time the network one way in this process; save its outputs to ``out``."""
    import torch

    from centerpoint_deploy.config import load_config
    from centerpoint_deploy.memory import keep_freed_memory
    from centerpoint_deploy.job.inputs import DEMO_CHECKPOINT
    from centerpoint_deploy.model.build import build_model

    if way == "kept-memory":
        keep_freed_memory()
    config = load_config(config_name)
    torch.manual_seed(0)
    model = build_model(config, checkpoint=DEMO_CHECKPOINT if config_name == "demo" else None)
    grid = config.grid_size  # (x, y, z) cells
    canvas = torch.relu(torch.randn(1, config.backbone.in_channels, grid[1], grid[0]))
    canvas = canvas * (torch.rand(1, 1, grid[1], grid[0]) < 0.1)
    if way == "channels-last":
        model = model.to(memory_format=torch.channels_last)
        canvas = canvas.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        model.forward_dense(canvas)
        times = []
        for _ in range(runs):
            begin = time.perf_counter()
            outputs = model.forward_dense(canvas)
            times.append(time.perf_counter() - begin)
    torch.save([{k: v.contiguous() for k, v in task.items()} for task in outputs], out)
    print(statistics.median(times) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="demo")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--child", choices=WAYS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.config, args.runs, args.out)
        return
    import torch

    print("| way | median ms | bit for bit the nchw outputs |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            outputs = {}
            for way in WAYS:
                path = Path(tmp) / f"{way}.pt"
                run = subprocess.run([sys.executable, __file__, "--child", way, "--config", args.config,
                                      "--runs", str(args.runs), "--out", str(path)],
                                     check=True, capture_output=True, text=True)
                outputs[way] = torch.load(path)
                same = all(torch.equal(a[k], b[k]) for a, b in zip(outputs["nchw"], outputs[way]) for k in a)
                print(f"| {way} | {float(run.stdout.split()[-1]):.0f} | {'yes' if same else 'no'} |")


if __name__ == "__main__":
    main()
