"""Where the GPU time of one frame goes: a torch.profiler run of the whole detector.

    python3 benchmarks/profile_pipeline.py --config j6gen2_base \
        --variant pytorch:fp16+channels_last+fuse_batchnorm+fuse_relu+pipeline_graph --out prof.md

Runs a benchmark variant (``centerpoint_deploy.variant``; it must be ``static`` or
``pipeline_graph``) on a synthetic 64-beam frame, profiles ``--iterations`` frames after
warm-up and writes a Markdown table: the CUDA kernels that take the most device time and the
host (CPU) time per frame, which shows whether kernel launches or kernels bound the frame.
A ``static`` variant runs stage by stage, so the table also gives the device time per stage
(record_function ranges); a ``pipeline_graph`` variant runs as a normal call (graph replays,
whose kernels the profiler lists one by one). Random weights unless ``--checkpoint`` is given
(timing does not depend on them).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from centerpoint_deploy.benchmark.inputs import lidar_frame, model_columns
from centerpoint_deploy.variant import VariantSpec, build_detector
from centerpoint_deploy.config import load_config
from centerpoint_deploy.point_buffer import DEFAULT_MAX_POINTS
from centerpoint_deploy.stages import STAGES
from centerpoint_deploy.static_pipeline import StaticPipeline


def _run_in_ranges(detector: StaticPipeline, points: torch.Tensor) -> None:
    """One staged run, each stage inside a profiler range ``stage:<name>``."""
    ranges = iter(STAGES)
    current = [record_function(f"stage:{next(ranges)}")]
    current[0].__enter__()

    def hook(name: str) -> None:
        current.pop().__exit__(None, None, None)
        following = next(ranges, None)
        if following is not None:
            current.append(record_function(f"stage:{following}"))
            current[0].__enter__()

    detector.run_stages([points], hook)


def _profile(detector: StaticPipeline, points: torch.Tensor, iterations: int) -> tuple[profile, float]:
    for _ in range(10):  # warm-up: allocator, cuDNN plans, CUDA graph capture
        detector([points])
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start.record()
        for _ in range(iterations):
            if detector.settings.graph:
                with record_function("stage:replay"):
                    detector([points])
                continue
            _run_in_ranges(detector, points)
        end.record()
        torch.cuda.synchronize()
    return prof, start.elapsed_time(end) / iterations


def _table(rows: list[tuple[str, float, int]], header: tuple[str, str, str]) -> list[str]:
    lines = [f"| {header[0]} | {header[1]} | {header[2]} |", "|---|---|---|"]
    lines += [f"| `{name[:90]}` | {ms:.3f} | {calls} |" for name, ms, calls in rows]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="j6gen2_base")
    parser.add_argument("--variant", default="pytorch:fp16+channels_last+fuse_batchnorm+static",
                        help="a benchmark variant string, static or pipeline_graph")
    parser.add_argument("--max-points", type=int, default=DEFAULT_MAX_POINTS, help="graph point buffer cap")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    config = load_config(args.config)
    torch.manual_seed(0)
    spec = VariantSpec.parse(args.variant, device="cuda")
    if not spec.static:
        parser.error(f"variant '{args.variant}' is neither static nor pipeline_graph")
    detector = build_detector(spec, config, checkpoint=args.checkpoint,
                              max_points=args.max_points).load()
    points = torch.from_numpy(model_columns(lidar_frame(seed=0), config)).pin_memory()
    prof, frame_ms = _profile(detector, points, args.iterations)

    events = prof.key_averages()
    n = args.iterations
    cuda = torch.autograd.DeviceType.CUDA
    kernels = sorted((e for e in events if e.device_type == cuda and not e.key.startswith("stage:")),
                     key=lambda e: e.device_time_total, reverse=True)
    kernel_rows = [(e.key, e.device_time_total / 1e3 / n, e.count // n) for e in kernels[: args.top]]
    # Each stage shows up twice: the host range (its kernels' device time) and the GPU-side
    # range (its span on the GPU timeline, idle gaps between launches included).
    spans = {e.key: e.device_time_total / 1e3 / n for e in events if e.device_type == cuda and e.key.startswith("stage:")}
    stage_rows = [(e.key.removeprefix("stage:"), e.device_time_total / 1e3 / n, spans.get(e.key, float("nan")))
                  for e in events if e.device_type != cuda and e.key.startswith("stage:")]
    device_ms = sum(e.device_time_total for e in kernels) / 1e3 / n
    host_ms = sum(e.cpu_time_total for e in events if e.device_type != cuda and e.key.startswith("stage:")) / 1e3 / n
    lines = [
        f"### Profile: {args.config}, {args.variant}, {points.shape[0]} points, {torch.cuda.get_device_name(0)}",
        "",
        f"Per frame over {n} frames: wall {frame_ms:.2f} ms (CUDA events, profiler on), "
        f"kernel time {device_ms:.2f} ms, host time in the stages {host_ms:.2f} ms.",
        "",
        "Per stage (ms per frame): kernel time, and the stage's span on the GPU timeline:",
        "",
        "| stage | kernel ms | GPU span ms |",
        "|---|---|---|",
        *[f"| {name} | {ms:.3f} | {span:.3f} |" for name, ms, span in stage_rows],
        "",
        f"Top {args.top} kernels by device time (ms per frame):",
        "",
        *_table(kernel_rows, ("kernel", "device ms", "calls per frame")),
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
