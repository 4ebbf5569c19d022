"""What each post-processing view adds to one frame of ``evaluate``'s loop (issue #16, item 3).

Times, on one synthetic frame already on the host, p50 over ``--iterations`` calls:
the detector alone (``detector(points)``), :func:`~centerpoint_deploy.views.detect_views` with the
mmdet3d view only, with both default views, and with the calibration view too; each call ends
with its boxes on the host (``.cpu()``), as the loop's host conversion does::

    python3 benchmarks/views_cost.py --config demo --device cuda \
        --variant pytorch:fp16+channels_last+fuse_batchnorm+fuse_relu+pipeline_graph

Prints a Markdown table, then the node post-processing's steps timed alone on the frame's head
maps (the decode; the decode and both NMS in fixed shapes, and exactly; the host's read and
remap; synchronised after each); ``--profile`` also prints torch.profiler's top CUDA and CPU
operators of the both-views call.
"""

from __future__ import annotations

import argparse

import torch

from centerpoint_deploy.benchmark.inputs import lidar_frame, model_columns
from centerpoint_deploy.benchmark.timing import HostClock, LatencyStats, stage_clock, time_calls
from centerpoint_deploy.config import load_config
from centerpoint_deploy.cuda_graphs import capture
from centerpoint_deploy.postprocess.modes import default_views
from centerpoint_deploy.variant import VariantSpec, build_detector
from centerpoint_deploy.views import detect_views


def node_steps(node, maps, config, warmup: int, iterations: int, device: torch.device) -> None:
    """p50 ms of each step of :class:`AutowarePostprocess` on one frame's head maps."""
    from centerpoint_deploy.postprocess.autoware import decode_node_candidates, node_maps

    def synced(fn):
        def run():
            out = fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            return out
        return run

    exact = node.select(maps, fixed_shapes=False)
    kept = sum(len(exact.kept(item)[1]) for item in range(len(exact.exact)))
    steps = [
        (f"node decode, {node.capacity} candidates a frame",
         lambda: decode_node_candidates(node_maps(maps[0], node.rot_y_axis_reference), config, node.params,
                                        node.capacity)),
        ("node decode and both NMS, fixed shapes (eager)", lambda: node.select(maps, fixed_shapes=True)),
        (f"node decode and both NMS, exact ({kept} boxes kept)", lambda: node.select(maps, fixed_shapes=False)),
        ("node boxes read on the host and remapped", lambda: node.finish(exact, lambda: maps)),
        ("node whole", lambda: node(maps)),
    ]
    for label, fn in steps:
        stats = LatencyStats.from_seconds(time_calls(synced(fn), HostClock(), warmup=warmup, iterations=iterations))
        print(f"| {label} | {stats.p50:.2f} |", flush=True)
    if device.type == "cuda":  # what a pipeline graph's loop pays on the GPU: the selection as one graph replay
        captured = capture(lambda _: node.select(maps), device)
        stats = LatencyStats.from_seconds(time_calls(captured.replay, stage_clock(device), warmup=warmup,
                                                     iterations=iterations))
        print(f"| node decode and both NMS, one CUDA graph replay (GPU time) | {stats.p50:.3f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="demo")
    parser.add_argument("--variant", default="pytorch:fp16+channels_last+fuse_batchnorm+fuse_relu+pipeline_graph")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--checkpoint", default=None, help="weights (random if not given; a trained model's boxes "
                                                            "make the node's NMS work harder)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    config = load_config(args.config)
    cloud = torch.from_numpy(model_columns(lidar_frame(seed=0), config))
    if torch.device(args.device).type == "cuda":
        cloud = cloud.pin_memory()
    views = default_views(config, calibration_floor=0.1)
    spec = VariantSpec.parse(args.variant, device=args.device)
    with build_detector(spec, config, checkpoint=args.checkpoint, reproducible=False) as detector:
        def views_call(chosen):
            return lambda: [d.boxes.cpu() for ds in detect_views(detector, [cloud], chosen).values() for d in ds]

        rows = [("detector alone", lambda: detector(cloud).boxes.cpu()),
                ("views: mmdet3d", views_call(views[:1])),
                ("views: mmdet3d + autoware", views_call(views[:2])),
                ("views: mmdet3d + autoware + calibration", views_call(views))]
        boxes = {name: len(ds[0]) for name, ds in detect_views(detector, [cloud], views).items()}
        print(f"| {args.variant}, {cloud.shape[0]} points, boxes per view {boxes} | p50 ms |\n|---|---|")
        for label, fn in rows:
            stats = LatencyStats.from_seconds(time_calls(fn, HostClock(), warmup=args.warmup,
                                                         iterations=args.iterations))
            print(f"| {label} | {stats.p50:.2f} |", flush=True)
        node = views[1].postprocess
        maps = detector.task_maps(detector.detect_with_head_outputs([cloud])[0])
        node_steps(node, maps, config, args.warmup, args.iterations, torch.device(args.device))
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            both = views_call(views[:2])
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for _ in range(5):
                    both()
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
