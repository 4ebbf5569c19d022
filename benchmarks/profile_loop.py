"""Where ``evaluate``'s loop spends its time: cProfile of :func:`evaluate_backends` on a synthetic T4
dataset, and torch.profiler of the node view's launch and finish on one frame's head maps::

    PYTHONPATH=$PWD python3 benchmarks/profile_loop.py --device cuda --frames 80 \
        --variant pytorch:fp16+channels_last+fuse_batchnorm+fuse_relu+pipeline_graph

Prints the loop's top functions by own time and by cumulative time, then the node view's top
operators (CPU and CUDA time).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
from pathlib import Path

import torch

from centerpoint_deploy.config import load_config
from centerpoint_deploy.data import open_dataset
from centerpoint_deploy.data.synthetic import LidarConfig, WorldConfig, generate_dataset
from centerpoint_deploy.evaluate.io import load_metric_config
from centerpoint_deploy.evaluate.runner import evaluate_backends
from centerpoint_deploy.job.inputs import DEMO_CHECKPOINT
from centerpoint_deploy.postprocess.modes import default_views
from centerpoint_deploy.variant import VariantSpec, build_detector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="demo")
    parser.add_argument("--variant", default="pytorch:fp16+channels_last+fuse_batchnorm+fuse_relu+pipeline_graph")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--frames", type=int, default=80)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--rows", type=int, default=30)
    args = parser.parse_args()
    config = load_config(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "data"
        generate_dataset(folder, 1, args.frames, 0, LidarConfig(), WorldConfig(), key_frame_interval=5,
                         lead_in_sweeps=1)
        dataset = open_dataset(folder, class_names=config.class_names, sweeps_num=1, load_dim=config.points.load_dim)
        spec = VariantSpec.parse(args.variant, device=args.device)
        metric = load_metric_config("t4", config.class_names)
        with build_detector(spec, config, checkpoint=DEMO_CHECKPOINT) as detector:
            evaluate_backends(dataset, {"v": detector}, Path(tmp) / "warm", metric, cache=False, plots=False,
                              frames=range(min(8, args.frames)), batch_size=args.batch_size)  # captures, compiles
            profiler = cProfile.Profile()
            profiler.enable()
            evaluate_backends(dataset, {"v": detector}, Path(tmp) / "out", metric, cache=False, plots=False,
                              batch_size=args.batch_size)
            profiler.disable()
            stats = pstats.Stats(profiler)
            stats.sort_stats("tottime").print_stats(args.rows)
            stats.sort_stats("cumulative").print_stats(args.rows)

            node_view(detector, dataset, config, args.rows)


def node_view(detector, dataset, config, rows: int) -> None:
    """torch.profiler's top operators of the node view's launch and finish on the first frame's maps."""
    from torch.profiler import ProfilerActivity, profile

    node = default_views(config)[1].postprocess
    cloud = torch.from_numpy(dataset[0].points[:, list(config.points.use_dim)].copy())
    with torch.inference_mode():
        maps = [{k: v.clone() for k, v in m.items()}
                for m in detector.task_maps(detector.detect_with_head_outputs([cloud])[0])]
        for _ in range(5):
            node.finish(node.launch(maps), lambda: maps)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(10):
                node.finish(node.launch(maps), lambda: maps)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


if __name__ == "__main__":
    main()
