"""GPU time of the Autoware node's fixed-shape selection, part by part, each part recorded as one
CUDA graph on the demo model's head maps (p50 of CUDA-event times)::

    PYTHONPATH=$PWD python3 benchmarks/node_select_parts.py --capacity 512 256 [--compile]
    PYTHONPATH=$PWD python3 benchmarks/node_select_parts.py --ops --device cpu

Parts, cumulative: the decode; the candidates sorted; circle NMS; IoU-BEV NMS (the whole selection).
With ``--compile`` each part is recorded from its ``torch.compile`` kernels (fixed shapes), as a
pipeline built with ``compile`` records the node's selection. With ``--ops``, instead of timing: the operators each part dispatches (views left out), on any
device; on a GPU nearly each is a kernel, and the selection is bound by their number.
"""

from __future__ import annotations

import argparse
import collections

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from centerpoint_deploy.benchmark.inputs import lidar_frame, model_columns
from centerpoint_deploy.benchmark.timing import LatencyStats, stage_clock, time_calls
from centerpoint_deploy.config import load_config
from centerpoint_deploy.cuda_graphs import capture
from centerpoint_deploy.job.inputs import DEMO_CHECKPOINT
from centerpoint_deploy.postprocess.autoware import (NODE_NMS_ROUNDS, NODE_PAIR_BUDGET, AutowarePostprocess,
                                                     decode_node_candidates, node_maps)
from centerpoint_deploy.postprocess.node_nms import circle_nms_node, iou_bev_nms_node
from centerpoint_deploy.variant import VariantSpec, build_detector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--capacity", type=int, nargs="+", default=[512])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--ops", action="store_true", help="count each part's operators instead of timing it")
    parser.add_argument("--compile", action="store_true", help="record each part's torch.compile kernels")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    config, device = load_config("demo"), torch.device(args.device)
    with build_detector(VariantSpec.parse("pytorch:fp32", device=device), config, checkpoint=DEMO_CHECKPOINT) as det, \
            torch.inference_mode():
        cloud = torch.from_numpy(model_columns(lidar_frame(seed=0), config))
        maps = node_maps(det.task_maps(det.detect_with_head_outputs(cloud)[0])[0], True)
        print(f"| capacity | part (cumulative) | {'operators' if args.ops else 'GPU ms (p50)'} |\n|---|---|---|")
        for capacity in args.capacity:
            node = AutowarePostprocess(config, capacity=capacity)
            params = node.params

            def decoded():
                return decode_node_candidates(maps, config, params, capacity)

            def circled():
                boxes = decoded().boxes(capacity)
                return boxes, circle_nms_node(boxes, params.circle_nms_dist_threshold, NODE_NMS_ROUNDS)[0]

            parts = [("decode", decoded), ("decode, sorted", lambda: decoded().boxes(capacity)),
                     ("+ circle NMS", circled),
                     ("+ IoU-BEV NMS", lambda: iou_bev_nms_node(*circled(), config.class_names,
                                                               params.iou_nms_search_distance_2d,
                                                               params.iou_nms_threshold, NODE_PAIR_BUDGET))]
            for label, fn in parts:
                if args.ops:
                    with OperatorCount() as counted:
                        fn()
                    print(f"| {capacity} | {label} | {counted.total} |", flush=True)
                    continue
                body = torch.compile(fn, dynamic=False) if args.compile else fn
                graph = capture(lambda _: body(), device)
                stats = LatencyStats.from_seconds(time_calls(graph.replay, stage_clock(device), warmup=10,
                                                            iterations=args.iterations))
                print(f"| {capacity} | {label} | {stats.p50:.3f} |", flush=True)


#: Operators that only make views (no kernel).
_VIEWS = frozenset({"alias", "as_strided", "detach", "expand", "lift_fresh", "permute", "reshape", "select", "slice",
                    "split", "squeeze", "t", "transpose", "unbind", "unsqueeze", "view", "_reshape_alias",
                    "_unsafe_view"})


class OperatorCount(TorchDispatchMode):
    """Counts the ATen operators dispatched inside it, views left out (``total``, ``by_name``)."""

    def __init__(self) -> None:
        super().__init__()
        self.by_name: collections.Counter[str] = collections.Counter()

    @property
    def total(self) -> int:
        return sum(self.by_name.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name not in _VIEWS:
            self.by_name[name] += 1
        return func(*args, **(kwargs or {}))


if __name__ == "__main__":
    main()
