"""The Autoware node's post-processing on the CPU, on the demo model's head maps, p50 per frame::

    PYTHONPATH=$PWD python3 benchmarks/node_host_cost.py

Times :meth:`AutowarePostprocess.select` (the decode and both NMS; exact on the CPU; with
``--fixed-shapes`` the GPU's fixed shapes, run on the CPU) and :meth:`AutowarePostprocess.finish`
(the kept boxes read and their classes remapped: what the host does per frame when the rest
runs on a GPU). Up to commit 66de225 both NMS ran on the host, in ``finish``.
"""

from __future__ import annotations

import argparse

import torch

from centerpoint_deploy.benchmark.inputs import lidar_frame, model_columns
from centerpoint_deploy.benchmark.timing import HostClock, LatencyStats, time_calls
from centerpoint_deploy.config import load_config
from centerpoint_deploy.job.inputs import DEMO_CHECKPOINT
from centerpoint_deploy.postprocess.autoware import AutowarePostprocess
from centerpoint_deploy.variant import VariantSpec, build_detector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="synthetic frames (benchmark.inputs)")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--fixed-shapes", action="store_true")
    args = parser.parse_args()
    config = load_config("demo")
    node = AutowarePostprocess(config)
    print("| frame seed | boxes kept | select p50 ms | finish p50 ms |\n|---|---|---|---|")
    with build_detector(VariantSpec.parse("pytorch:fp32", device="cpu"), config, checkpoint=DEMO_CHECKPOINT) as det, \
            torch.inference_mode():
        for seed in args.seeds:
            cloud = torch.from_numpy(model_columns(lidar_frame(seed=seed), config))
            maps = det.task_maps(det.detect_with_head_outputs(cloud)[0])
            selection = node.select(maps, fixed_shapes=args.fixed_shapes)
            boxes = node.finish(selection, lambda: maps)
            select, finish = (
                LatencyStats.from_seconds(time_calls(fn, HostClock(), warmup=5, iterations=args.iterations)).p50
                for fn in (lambda: node.select(maps, fixed_shapes=args.fixed_shapes),
                           lambda: node.finish(selection, lambda: maps)))
            print(f"| {seed} | {len(boxes[0])} | {select:.3f} | {finish:.3f} |")


if __name__ == "__main__":
    main()
