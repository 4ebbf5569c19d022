"""Where an end-to-end call of a whole-pipeline graph spends its time on the host, p50 per frame::

    PYTHONPATH=$PWD python3 benchmarks/e2e_host_cost.py --config j6gen2_base \
        --variant pytorch:fp16+channels_last+fuse_batchnorm+fuse_relu+pipeline_graph

The benchmark's end-to-end figure is wall time from host points to boxes on the host. Here one
call is cut where the host waits or hands over: ``launch`` (the checks, the cloud copied into
the pinned staging rows and queued to the device, the replay and the result's copy queued),
``wait`` (until the packed result is on the host), ``finish`` (the deferred checks and the
boxes unpacked). Beside it: the replay's GPU time alone (CUDA events, cloud already loaded), the
host copy of the cloud into pinned memory, its DMA to the device, and the whole call with the
cloud pageable and pinned; then ``--profile`` calls under cProfile, the host functions by their
own time (cProfile slows small functions, so read it for where, not how much). Random weights
(timing does not depend on them).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time

import torch

from centerpoint_deploy.benchmark.inputs import lidar_frame, model_columns
from centerpoint_deploy.benchmark.timing import CudaClock, HostClock, LatencyStats, WallClock, time_calls
from centerpoint_deploy.config import load_config
from centerpoint_deploy.variant import VariantSpec, build_detector


def _p50(samples: list[float]) -> float:
    return LatencyStats.from_seconds(samples).p50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="j6gen2_base")
    parser.add_argument("--variant", default="pytorch:fp16+channels_last+fuse_batchnorm+fuse_relu+pipeline_graph")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--profile", type=int, default=100, help="calls under cProfile (0: none)")
    args = parser.parse_args()

    config = load_config(args.config)
    spec = VariantSpec.parse(args.variant, device="cuda")
    if not spec.pipeline_graph:
        parser.error(f"variant '{args.variant}' is not a pipeline_graph variant")
    torch.manual_seed(0)
    detector = build_detector(spec, config).load()
    pageable = torch.from_numpy(model_columns(lidar_frame(seed=0), config))
    pinned = pageable.pin_memory()
    for _ in range(args.warmup):
        detector(pageable)

    phases: dict[str, list[float]] = {"launch": [], "wait": [], "finish": []}
    for _ in range(args.iterations):
        torch.cuda.synchronize()
        start = time.perf_counter()
        launched = detector.launch(pageable)
        launched_at = time.perf_counter()
        launched.wait()
        waited_at = time.perf_counter()
        launched.detections()
        done = time.perf_counter()
        for name, seconds in zip(phases, (launched_at - start, waited_at - launched_at, done - waited_at)):
            phases[name].append(seconds)

    buffer = detector.point_buffer([pinned])
    buffer.load([pinned])
    replay = time_calls(detector.capture(buffer).replay, CudaClock("cuda"), warmup=5, iterations=args.iterations)
    staging = torch.empty_like(pinned)
    memcpy = time_calls(lambda: staging.copy_(pageable), HostClock(), warmup=5, iterations=args.iterations)
    device_rows = torch.empty_like(pinned, device="cuda")
    dma = time_calls(lambda: device_rows.copy_(pinned, non_blocking=True), CudaClock("cuda"), warmup=5,
                     iterations=args.iterations)
    wall = WallClock("cuda")
    whole = {name: time_calls(lambda cloud=cloud: detector(cloud), wall, warmup=5, iterations=args.iterations)
             for name, cloud in (("pageable", pageable), ("pinned", pinned))}

    print(f"### {args.config}, `{args.variant}`, {pageable.shape[0]} points x {pageable.shape[1]} columns, "
          f"{torch.cuda.get_device_name(0)}, torch threads {torch.get_num_threads()}\n")
    print("| part | p50 ms |\n|---|---|")
    for name, samples in phases.items():
        print(f"| call: {name} | {_p50(samples):.3f} |")
    print(f"| call: launch + wait + finish | {_p50([sum(s) for s in zip(*phases.values())]):.3f} |")
    print(f"| the replay alone (GPU) | {_p50(replay):.3f} |")
    print(f"| the cloud into pinned memory (host) | {_p50(memcpy):.3f} |")
    print(f"| pinned cloud to the device (GPU) | {_p50(dma):.3f} |")
    for name, samples in whole.items():
        print(f"| end to end, {name} cloud | {_p50(samples):.3f} |")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.profile):
            detector(pageable)
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
        print(f"\n{args.profile} end-to-end calls under cProfile, by own time:\n\n```\n{text.getvalue().strip()}\n```")


if __name__ == "__main__":
    main()
