"""Where the device's time goes in ``evaluate``'s loop: copies, the sweep merge, and a per-stream timeline::

    PYTHONPATH=$PWD python3 benchmarks/loop_timeline.py --sweeps 10 --frames 40 --data DIR \
        --variant pytorch:fp16+channels_last+fuse_batchnorm+fuse_relu+compile+pipeline_graph

Prints four tables (markdown):

1. **Host -> device copies** of the benchmark frame's size and of one frame's slot size (the
   sources of the dataset's first frame) from three kinds of host memory: torch's page-locked
   allocation (``cudaHostAlloc``), shared memory page-locked in place (``cudaHostRegister``, what
   the loader's slots are) and pageable memory; alone and beside a compute stream kept busy by matrix products; and the host copy from
   pageable into page-locked memory (the point buffer's staging of a pageable cloud).
2. **The pipeline's upload** of the benchmark frame (a pageable cloud into the point buffer): the
   host time of each part, and the device time it spans.
3. **The sweep merge** of the dataset's first frame on the device: the slot's upload, the merge graph's replay and
   the operator-by-operator merge, each timed alone with CUDA events.
4. **The steady loop's device timeline** (``--timeline``, torch.profiler's CUDA activity over a
   second pass of ``evaluate_backends``): per stream, the kernels' and copies' busy time a frame, the
   copies' bytes and bandwidth, the longest kernels; and the union of every stream's busy time
   against the pass's wall time (how much of the loop the device is doing anything).

``--operator-merge`` also times the steady loop's frames/s with the merge graphs replaced by the
operator-by-operator merge (round 13's loader), against the graphs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from centerpoint_deploy.benchmark.timing import CudaClock, time_calls
from centerpoint_deploy.config import load_config
from centerpoint_deploy.data import loader as loader_module
from centerpoint_deploy.data import open_dataset
from centerpoint_deploy.data.device_merge import MergeGraphs, merge_on_device
from centerpoint_deploy.data.synthetic import LidarConfig, WorldConfig, generate_dataset
from centerpoint_deploy.evaluate.io import load_metric_config
from centerpoint_deploy.evaluate.runner import evaluate_backends
from centerpoint_deploy.job.inputs import DEMO_CHECKPOINT
from centerpoint_deploy.point_buffer import DEFAULT_MAX_POINTS, PointBuffer, point_capacity
from centerpoint_deploy.variant import VariantSpec, build_detector


#: The benchmark frame's points and floats a point (j6gen2's five columns): what its ``upload`` copies.
BENCHMARK_POINTS, BENCHMARK_COLUMNS = 92_947, 5
BENCHMARK_FRAME_BYTES = BENCHMARK_POINTS * BENCHMARK_COLUMNS * 4


def _events_ms(fn, repeats: int, stream: torch.cuda.Stream) -> float:
    """Median GPU ms of ``fn()`` queued on ``stream`` (CUDA events around each call on it)."""
    with torch.cuda.stream(stream):
        return statistics.median(time_calls(fn, CudaClock(stream.device), warmup=0, iterations=repeats)) * 1e3


def _host_us(fn, repeats: int) -> float:
    """Median host microseconds of ``fn()`` (the device synchronised between calls)."""
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        begin = time.perf_counter()
        fn()
        times.append(time.perf_counter() - begin)
    return statistics.median(times) * 1e6


def copy_table(nbytes: int, device: torch.device, repeats: int = 20) -> str:
    """Host -> device bandwidth of ``nbytes`` from each kind of host memory, alone and beside compute."""
    floats = nbytes // 4
    target = torch.empty(floats, device=device)
    pinned = torch.empty(floats, pin_memory=True)
    shared = torch.empty(floats).share_memory_()
    shared.fill_(0.0)  # faulted in, as the readers' writes fault a slot in before it is page-locked
    begin = time.perf_counter()
    registered = int(torch.cuda.cudart().cudaHostRegister(shared.data_ptr(), floats * 4, 0)) == 0
    register_ms = (time.perf_counter() - begin) * 1e3
    pageable = torch.empty(floats)
    for host in (pinned, shared, pageable):
        host.fill_(1.0)  # fault the pages in
    copier = torch.cuda.Stream(device)
    a = torch.randn(8192, 8192, device=device, dtype=torch.float16)
    rows = ["| host memory | MB | alone ms | GB/s | beside matrix products ms | GB/s |", "|---|---|---|---|---|---|"]
    kinds = [("cudaHostAlloc (torch pin_memory)", pinned),
             (f"shared, cudaHostRegister ({'registered' if registered else 'REFUSED'})", shared),
             ("pageable", pageable)]
    for name, host in kinds:
        alone = _events_ms(lambda: target.copy_(host, non_blocking=True), repeats, copier)
        busy = torch.cuda.Stream(device)
        with torch.cuda.stream(busy):
            for _ in range(6 * repeats):
                a @ a
        beside = _events_ms(lambda: target.copy_(host, non_blocking=True), repeats, copier)
        torch.cuda.synchronize(device)
        rows.append(f"| {name} | {nbytes / 1e6:.1f} | {alone:.3f} | {nbytes / alone / 1e6:.1f} | {beside:.3f} | "
                    f"{nbytes / beside / 1e6:.1f} |")
    if registered:
        torch.cuda.cudart().cudaHostUnregister(shared.data_ptr())
    host_ms = {name: _host_us(copy, repeats) / 1e3 for name, copy in (
        ("torch copy_", lambda: pinned.copy_(pageable)),
        ("numpy copyto", lambda: np.copyto(pinned.numpy(), pageable.numpy())))}
    rows.append("")
    rows.append("host copy of it, pageable -> page-locked (the point buffer's staging): " +
                ", ".join(f"{name} {ms:.3f} ms" for name, ms in host_ms.items()) +
                f"; page-locking the shared memory in place (cudaHostRegister, once per reader pool): {register_ms:.2f} ms")
    return "\n".join(rows)


def upload_table(device: torch.device, repeats: int = 50) -> str:
    """The host cost of the pipeline's upload of the benchmark frame (``PointBuffer.load`` of a pageable
    cloud, j6gen2's grid) and of its parts, and the device time from before it to the copy's end."""
    config = load_config("j6gen2_base")
    cloud = torch.randn(BENCHMARK_POINTS, BENCHMARK_COLUMNS)
    buffer = PointBuffer(1, point_capacity(BENCHMARK_POINTS, DEFAULT_MAX_POINTS), BENCHMARK_COLUMNS,
                         config.voxelization, device)
    staging, target = buffer._staging[0, :BENCHMARK_POINTS], buffer.points[0, :BENCHMARK_POINTS]
    parts = [("cloud.is_pinned()", cloud.is_pinned), ("copy into the page-locked staging", lambda: staging.copy_(cloud)),
             ("copy_ to the device issued (non_blocking, from staging)", lambda: target.copy_(staging, non_blocking=True)),
             ("PointBuffer.load (all of it)", lambda: buffer.load([cloud]))]
    rows = ["| upload part | host us |", "|---|---|"] + [f"| {name} | {_host_us(fn, repeats):.1f} |" for name, fn in parts]
    stream = torch.cuda.current_stream(device)
    rows.append(f"| device: event before load -> event after its copy | "
                f"{_events_ms(lambda: buffer.load([cloud]), repeats, stream) * 1e3:.1f} |")
    return "\n".join(rows)


def merge_table(dataset, columns, device: torch.device, repeats: int = 20) -> str:
    """GPU ms of the first frame's slot upload, merge graph replay and operator-by-operator merge."""
    rows_bound = dataset.rows_bound(0)
    slot = torch.empty(rows_bound, dataset.load_dim, pin_memory=True)
    layout = dataset.read_sources(0, slot.numpy())
    if layout is None:
        return "(the frame has no sources to merge)"
    raw = slot[: layout.raw_rows]
    stream = torch.cuda.Stream(device)
    graphs = MergeGraphs(device, columns)
    with torch.cuda.stream(stream):
        graphs(raw, layout)  # captures the graph of this size
    torch.cuda.synchronize(device)
    (captured,) = graphs._graphs.values()
    on_device = raw.to(device)
    results = [
        ("slot upload (raw rows into the graph's buffer)",
         _events_ms(lambda: captured.raw[: layout.raw_rows].copy_(raw, non_blocking=True), repeats, stream)),
        ("merge graph replay", _events_ms(captured.captured.replay, repeats, stream)),
        ("MergeGraphs call (upload, table, replay, output copy)", _events_ms(lambda: graphs(raw, layout), repeats, stream)),
        ("operator-by-operator merge (merge_on_device, sources on the device)",
         _events_ms(lambda: merge_on_device(on_device, layout), repeats, stream)),
    ]
    lines = [f"frame 0: {layout.raw_rows:,} raw rows, {layout.rows:,} merged, {len(layout.parts)} parts, "
             f"{raw.numel() * 4 / 1e6:.1f} MB", "", "| step | GPU ms |", "|---|---|"]
    return "\n".join(lines + [f"| {name} | {ms:.3f} |" for name, ms in results])


def _union(intervals: list[tuple[float, float]]) -> float:
    """Total length covered by ``[(start, end)]``."""
    covered, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end <= reach:
            continue
        covered += end - max(start, reach)
        reach = end
    return covered


def timeline_table(trace: dict, frames: int, top: int = 6) -> str:
    """Per stream: kernels and copies a frame from a Chrome trace of torch.profiler's CUDA activity."""
    device_events = [e for e in trace["traceEvents"] if e.get("ph") == "X"
                     and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
    if not device_events:
        return "(no device activity recorded)"
    per_stream: dict[int, list[dict]] = defaultdict(list)
    for event in device_events:
        per_stream[int(event["args"].get("stream", -1))].append(event)
    start = min(e["ts"] for e in device_events)
    wall = max(e["ts"] + e["dur"] for e in device_events) - start
    rows = ["| stream | busy us a frame | kernels a frame | kernel us | copies (kind: count, MB, us, GB/s) "
            "| longest kernels (us a frame) |", "|---|---|---|---|---|---|"]
    for stream, events in sorted(per_stream.items(), key=lambda item: -sum(e["dur"] for e in item[1])):
        kernels = [e for e in events if e["cat"] == "kernel"]
        copies: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
        for e in events:
            if e["cat"] != "kernel":
                kind = e["name"].removeprefix("Memcpy ")  # "HtoD (Pinned -> Device)", "Memset (Device)"
                entry = copies[kind]
                entry[0] += 1
                entry[1] += float(e["args"].get("bytes", 0))
                entry[2] += e["dur"]
        by_name: dict[str, float] = defaultdict(float)
        for e in kernels:
            by_name[e["name"][:48]] += e["dur"]
        longest = "; ".join(f"{name} {us / frames:.0f}" for name, us in
                            sorted(by_name.items(), key=lambda item: -item[1])[:top])
        copy_text = "; ".join(f"{kind}: {n / frames:.1f}, {b / frames / 1e6:.2f}, {us / frames:.0f}, "
                              f"{b / us / 1e3 if us else 0:.1f}" for kind, (n, b, us) in copies.items())
        busy = _union([(e["ts"], e["ts"] + e["dur"]) for e in events])
        rows.append(f"| {stream} | {busy / frames:.0f} | {len(kernels) / frames:.0f} | "
                    f"{sum(e['dur'] for e in kernels) / frames:.0f} | {copy_text} | {longest} |")
    any_busy = _union([(e["ts"], e["ts"] + e["dur"]) for e in device_events])
    sm_busy = _union([(e["ts"], e["ts"] + e["dur"]) for e in device_events if e["cat"] == "kernel"])
    summary = (f"{frames} frames in {wall / 1e3:.1f} ms of device time span ({wall / frames:.0f} us a frame): "
               f"some stream busy {any_busy / frames:.0f} us a frame ({any_busy / wall:.0%}), some kernel running "
               f"{sm_busy / frames:.0f} us a frame ({sm_busy / wall:.0%})")
    return "\n".join([summary, "", *rows])


def _loop_frames_per_s(dataset, detector, metric, out: Path, workers: int | None) -> float:
    evaluate_backends(dataset, {"v": detector}, out, metric, cache=False, plots=False, workers=workers)
    return json.loads((out / "comparison.json").read_text())["throughput"]["frames_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="demo")
    parser.add_argument("--variant", default="pytorch:fp16+channels_last+fuse_batchnorm+fuse_relu+compile+pipeline_graph")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--sweeps", type=int, default=10)
    parser.add_argument("--data", type=Path, default=None, help="the synthetic dataset's folder (generated when missing)")
    parser.add_argument("--workers", type=int, default=None, help="reader processes (default: the loader's)")
    parser.add_argument("--timeline", action="store_true", help="profile the steady loop's device activity")
    parser.add_argument("--operator-merge", action="store_true",
                        help="the steady loop's frames/s with the operator-by-operator merge against the graphs")
    parser.add_argument("--trace", type=Path, default=None, help="also write the loop's Chrome trace here")
    args = parser.parse_args()
    device = torch.device("cuda")
    config = load_config(args.config)
    config = dataclasses.replace(config, points=dataclasses.replace(config.points, sweeps_num=args.sweeps))
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.data or Path(tmp) / "data"
        if not folder.exists():
            generate_dataset(folder, 1, args.frames, 0, LidarConfig(), WorldConfig(), key_frame_interval=5,
                             lead_in_sweeps=max(args.sweeps, 1))
        dataset = open_dataset(folder, class_names=config.class_names, sweeps_num=args.sweeps,
                               load_dim=config.points.load_dim)
        columns = list(config.points.use_dim)
        print(upload_table(device), "\n", flush=True)
        for nbytes in (BENCHMARK_FRAME_BYTES, dataset.rows_bound(0) * dataset.load_dim * 4):
            print(copy_table(nbytes, device), "\n", flush=True)
        print(merge_table(dataset, columns, device), "\n", flush=True)
        if not (args.timeline or args.operator_merge):
            return
        metric = load_metric_config("t4", config.class_names)
        spec = VariantSpec.parse(args.variant, device=device)
        with build_detector(spec, config, checkpoint=DEMO_CHECKPOINT) as detector:
            warm = _loop_frames_per_s(dataset, detector, metric, Path(tmp) / "warm", args.workers)  # captures, compiles
            steady = _loop_frames_per_s(dataset, detector, metric, Path(tmp) / "steady", args.workers)
            print(f"loop frames/s: first pass {warm:.1f}, steady {steady:.1f}", flush=True)
            if args.operator_merge:
                graphs = loader_module.MergeGraphs
                loader_module.MergeGraphs = lambda *_: None  # _frame then uploads and merges operator by operator
                try:
                    _loop_frames_per_s(dataset, detector, metric, Path(tmp) / "op-warm", args.workers)
                    operator = _loop_frames_per_s(dataset, detector, metric, Path(tmp) / "op", args.workers)
                finally:
                    loader_module.MergeGraphs = graphs
                print(f"loop frames/s, steady: merge graphs {steady:.1f}, operator-by-operator merge {operator:.1f}",
                      flush=True)
            if args.timeline:
                from torch.profiler import ProfilerActivity, profile

                with profile(activities=[ProfilerActivity.CUDA]) as prof:
                    begin = time.perf_counter()
                    evaluate_backends(dataset, {"v": detector}, Path(tmp) / "profiled", metric, cache=False,
                                      plots=False, workers=args.workers)
                    seconds = time.perf_counter() - begin
                trace_path = args.trace or Path(tmp) / "trace.json"
                prof.export_chrome_trace(str(trace_path))
                trace = json.loads(trace_path.read_text())
                print(f"profiled pass: {len(dataset) / seconds:.1f} frames/s (evaluate_backends, scoring included)")
                print(timeline_table(trace, len(dataset)))


if __name__ == "__main__":
    main()
