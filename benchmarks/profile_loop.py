"""Where ``evaluate``'s loop spends its time, on a synthetic T4 dataset::

    PYTHONPATH=$PWD python3 benchmarks/profile_loop.py --device cuda --frames 80 [--sweeps 10] \
        --variant pytorch:fp16+channels_last+fuse_batchnorm+fuse_relu+pipeline_graph

Prints the main thread's wall time per frame in each step of the loop (each step's function
timed where it is called; the reader processes and the pinning thread are not in it), then
torch.profiler's top operators and CUDA runtime calls, by host time, of 20 frames' views
launched and read as the loop does (graph launches, pinned allocations, event waits).
(cProfile is no help here: it mixes the pinning thread's waits into the loop's functions.)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import inspect
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import torch

from centerpoint_deploy.cli.app import prepare_process
from centerpoint_deploy.config import load_config
from centerpoint_deploy.data import loader, open_dataset
from centerpoint_deploy.data.synthetic import LidarConfig, WorldConfig, generate_dataset
from centerpoint_deploy.evaluate.io import load_metric_config
from centerpoint_deploy.evaluate.runner import evaluate_backends
from centerpoint_deploy.job.inputs import DEMO_CHECKPOINT
from centerpoint_deploy.postprocess.modes import default_views
from centerpoint_deploy.variant import VariantSpec, build_detector


#: (owner, attribute, step name): what :class:`StepTimes` times, in loop order.
_STEPS = [
    ("centerpoint_deploy.evaluate.runner", "_run_detectors", "the whole loop"),
    ("centerpoint_deploy.data.loader.FrameLoader", "__iter__", "next frame from the readers (its upload queued)"),
    ("centerpoint_deploy.data.readers.ReaderPool", "_receive", "  waiting for a reader's message"),
    ("centerpoint_deploy.data.readers.ReaderPool", "release", "  slots released"),
    ("centerpoint_deploy.data.loader.FrameLoader", "_frame", "  frame to the device (copy and merge queued)"),
    ("centerpoint_deploy.data.device_merge.MergeGraphs", "__call__", "    merge graph (copy in, replay)"),
    ("centerpoint_deploy.data.loader.FrameLoader", "_hand_over", "  hand-over (stream wait, copy done, release)"),
    ("centerpoint_deploy.evaluate.runner", "_launch", "launch (all views)"),
    ("centerpoint_deploy.static_pipeline.StaticPipeline", "launch", "  pipeline launch (copy in, replay, copy out)"),
    ("centerpoint_deploy.static_pipeline.StaticPipeline", "capture", "    graphs captured (a new size)"),
    ("centerpoint_deploy.static_pipeline.StaticPipeline", "on_head_outputs",
     "  node selection queued (copy in, side replay, copy out)"),
    ("centerpoint_deploy.postprocess.autoware.NodeSelection", "to_host", "    node boxes' copy queued"),
    ("centerpoint_deploy.evaluate.runner", "_collect", "collect (all views)"),
    ("centerpoint_deploy.static_pipeline.LaunchedRun", "detections", "  pipeline boxes read and checked"),
    ("centerpoint_deploy.postprocess.autoware.AutowarePostprocess", "finish", "  node boxes read (and remapped)"),
    ("centerpoint_deploy.evaluate.data_classes.SampleBoxes", "from_detections", "  host boxes to SampleBoxes"),
]


class StepTimes:
    """Wall time of the loop's steps in the main thread (each function wrapped while timing)."""

    def __init__(self) -> None:
        self.seconds = {name: 0.0 for _, _, name in _STEPS}

    @contextlib.contextmanager
    def timing(self) -> Iterator[None]:
        undo = []
        for path, attribute, name in _STEPS:
            owner = _owner(path)
            original = getattr(owner, attribute)
            undo.append((owner, attribute, inspect.getattr_static(owner, attribute)))  # a classmethod as it is
            timed = self._timed_iter if inspect.isgeneratorfunction(original) else self._timed
            setattr(owner, attribute, timed(original, name))
        try:
            yield
        finally:
            for owner, attribute, original in undo:
                setattr(owner, attribute, original)

    def _timed(self, fn, name: str):
        def timed(*args, **kwargs):
            if threading.current_thread() is not threading.main_thread():
                return fn(*args, **kwargs)
            begin = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - begin
        return timed

    def _timed_iter(self, fn, name: str):
        def timed_iter(*args, **kwargs):
            items = iter(fn(*args, **kwargs))
            while True:
                begin = time.perf_counter()
                item = next(items, None)
                self.seconds[name] += time.perf_counter() - begin
                if item is None:
                    return
                yield item
        return timed_iter

    def markdown(self, frames: int) -> str:
        rows = [f"| {name} | {value / frames * 1e3:.2f} |" for name, value in self.seconds.items()]
        return "\n".join(["| step (main thread) | ms a frame |", "|---|---|", *rows])


def _owner(path: str):
    """The module, or the class in a module, that ``path`` names."""
    try:
        return importlib.import_module(path)
    except ImportError:
        module, name = path.rsplit(".", 1)
        return getattr(importlib.import_module(module), name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="demo")
    parser.add_argument("--variant", default="pytorch:fp16+channels_last+fuse_batchnorm+fuse_relu+pipeline_graph")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--frames", type=int, default=80)
    parser.add_argument("--sweeps", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--rows", type=int, default=30)
    parser.add_argument("--device-merge-files", type=int, action="append",
                        help="merge frames reading at least this many files on the device (default: the loader's "
                             "DEVICE_MERGE_FILES); repeat the option for a step table each")
    parser.add_argument("--data", type=Path, default=None,
                        help="the synthetic dataset's folder, generated there when missing and kept (default: a "
                             "temporary one)")
    args = parser.parse_args()
    prepare_process()  # the evaluate command's process settings
    config = load_config(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.data or Path(tmp) / "data"
        if not folder.exists():
            generate_dataset(folder, 1, args.frames, 0, LidarConfig(), WorldConfig(), key_frame_interval=5,
                             lead_in_sweeps=max(args.sweeps, 1))
        config = dataclasses.replace(config, points=dataclasses.replace(config.points, sweeps_num=args.sweeps))
        dataset = open_dataset(folder, class_names=config.class_names, sweeps_num=args.sweeps,
                               load_dim=config.points.load_dim)
        spec = VariantSpec.parse(args.variant, device=args.device)
        metric = load_metric_config("t4", config.class_names)
        with build_detector(spec, config, checkpoint=DEMO_CHECKPOINT) as detector:
            for merge_files in args.device_merge_files or [loader.DEVICE_MERGE_FILES]:
                loader.DEVICE_MERGE_FILES = merge_files
                evaluate_backends(dataset, {"v": detector}, Path(tmp) / "warm", metric, cache=False, plots=False,
                                  batch_size=args.batch_size)  # every frame once: captures every graph size, compiles
                steps = StepTimes()
                with steps.timing():
                    evaluate_backends(dataset, {"v": detector}, Path(tmp) / "out", metric, cache=False, plots=False,
                                      batch_size=args.batch_size)
                print(f"frames reading {merge_files} files or more merged on the device:")
                print(steps.markdown(len(dataset)))

            loop_step_profile(detector, dataset, config, args.rows)
            if getattr(detector, "_graphs", None):
                print(graph_launch_cost(detector))


def loop_step_profile(detector, dataset, config, rows: int, frames: int = 20) -> None:
    """torch.profiler's top operators and runtime calls, by their time on the host, of ``frames``
    frames' views launched and read as the loop does (each batch's results read after the next
    launch), on clouds already on the device: where the main thread's time goes besides reading."""
    from torch.profiler import ProfilerActivity, profile

    from centerpoint_deploy.views import launch_views

    views = default_views(config)
    device = getattr(detector, "device", torch.device("cpu"))
    clouds = [torch.from_numpy(dataset[i].points[:, list(config.points.use_dim)].copy()).to(device)
              for i in range(min(frames, len(dataset)))]

    def run() -> None:
        previous = None
        for cloud in clouds:
            pending = launch_views(detector, [cloud], views)
            if previous is not None:
                for view in previous.values():
                    view.result()
            previous = pending
        for view in previous.values():
            view.result()

    with torch.inference_mode():
        run()  # records every side graph
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            run()
    print(f"{len(clouds)} frames' views launched and read:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def graph_launch_cost(pipeline, repeats: int = 50) -> str:
    """Host time of one ``replay()`` of each graph the pipeline recorded (the pipeline's and the
    side graphs of :meth:`StaticPipeline.on_head_outputs`), three ways: the device idle before it
    (synchronised), behind a 5 ms sleep kernel (the device busy: does the launch wait?), and
    back to back (each replay behind the last), with the kernels a replay runs, their summed GPU
    time and the longest three."""
    from torch.profiler import ProfilerActivity, profile

    graphs = [(f"pipeline {key}", captured) for key, captured in pipeline._graphs.items()]
    graphs += [(f"side {entry[1]!r:.30}", side.captured) for entry, side in pipeline._on_outputs.items()]
    rows = ["| graph | kernels | their GPU us | longest kernels (us) | idle us | busy us | back to back us |",
            "|---|---|---|---|---|---|---|"]
    for name, captured in graphs:
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            captured.replay()
            torch.cuda.synchronize()
        spans = sorted(((e.time_range.elapsed_us(), e.name) for e in prof.events()
                        if e.device_type == torch.autograd.DeviceType.CUDA), reverse=True)
        kernels, gpu = len(spans), sum(us for us, _ in spans)
        longest = "; ".join(f"{kernel[:40]} {us:.0f}" for us, kernel in spans[:3])
        idle, busy, chained = [], [], []
        for _ in range(repeats):
            torch.cuda.synchronize()
            begin = time.perf_counter()
            captured.replay()
            idle.append(time.perf_counter() - begin)
            torch.cuda.synchronize()
            torch.cuda._sleep(10_000_000)  # about 5 ms of one busy kernel
            begin = time.perf_counter()
            captured.replay()
            busy.append(time.perf_counter() - begin)
        torch.cuda.synchronize()
        for _ in range(repeats):
            begin = time.perf_counter()
            captured.replay()
            chained.append(time.perf_counter() - begin)
        torch.cuda.synchronize()
        med = [sorted(v)[len(v) // 2] * 1e6 for v in (idle, busy, chained)]
        rows.append(f"| {name} | {kernels} | {gpu:.0f} | {longest} | {med[0]:.0f} | {med[1]:.0f} | {med[2]:.0f} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
