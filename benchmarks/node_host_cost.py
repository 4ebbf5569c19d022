"""The host part of the Autoware node's post-processing (``AutowarePostprocess.finish``: the sort of
the kept cells, circle NMS, IoU-BEV NMS, remapper) on the demo model's head maps, p50 per frame::

    PYTHONPATH=$PWD python3 benchmarks/node_host_cost.py

The decode (``launch``) runs once per frame beforehand and is not timed. To time another
commit's code with this script: ``git worktree add /tmp/old REV`` and
``PYTHONPATH=/tmp/old python3 benchmarks/node_host_cost.py`` (the script reads nothing but
``launch`` and ``finish``, present since commit 45ee5cb).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from centerpoint_deploy.benchmark.inputs import lidar_frame, model_columns
from centerpoint_deploy.config import load_config
from centerpoint_deploy.job.inputs import DEMO_CHECKPOINT
from centerpoint_deploy.postprocess.autoware import AutowarePostprocess
from centerpoint_deploy.variant import VariantSpec, build_detector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="synthetic frames (benchmark.inputs)")
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()
    config = load_config("demo")
    node = AutowarePostprocess(config)
    print("| frame seed | candidates | boxes | finish p50 ms |\n|---|---|---|---|")
    with build_detector(VariantSpec.parse("pytorch:fp32", device="cpu"), config, checkpoint=DEMO_CHECKPOINT) as det, \
            torch.inference_mode():
        for seed in args.seeds:
            cloud = torch.from_numpy(model_columns(lidar_frame(seed=seed), config))
            maps = det.task_maps(det.detect_with_head_outputs(cloud)[0])
            candidates = node.launch(maps)
            boxes = node.finish(candidates, lambda: maps)
            times = []
            for _ in range(args.iterations):
                begin = time.perf_counter()
                node.finish(candidates, lambda: maps)
                times.append((time.perf_counter() - begin) * 1e3)
            print(f"| {seed} | {int(candidates.counts[0])} | {len(boxes[0])} | {statistics.median(times):.3f} |")


if __name__ == "__main__":
    main()
