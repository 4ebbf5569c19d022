"""``evaluate`` throughput against the benchmark's pipeline throughput, with 1 and 10 sweeps.

    python benchmarks/evaluate_throughput.py --device cuda --variant pytorch:fp32 \
        --variant pytorch:fp16+channels_last+fuse_batchnorm+fuse_relu+compile+pipeline_graph \
        --frames 80 --batch-size 1 --batch-size 4 --batch-size 8 --out results/evaluate_throughput

For each sweep count (``--sweeps``, default 1 and 10) a synthetic T4 dataset is generated
(``--frames`` key frames at 2 Hz out of 10 Hz sweeps, the sensor ``--beams`` x ``--columns``),
then for each variant:

- **pipeline**: ``benchmark_detector`` on the dataset's first frame already in memory
  (points on the host -> boxes on the host, p50): the most frames/s the loop could reach;
- **evaluate**: ``evaluate_backends`` over all frames (reading, sweep merging, column
  selection in worker processes, the upload, detection, scoring) once per ``--batch-size``
  (default 1; repeat the option for several), twice: the first pass captures a graph for each
  batch and cloud size the frames need (reported as the first pass's frames/s), the second is
  the steady state a long evaluation runs in: frames/s of its loop and the ratio to the
  pipeline's (the targets: >= 0.9 with 1 sweep, >= 0.8 with 10). The pipeline figure stays
  batch 1's (what a car runs); with B > 1 the ratio can pass 1. ``--views both`` (the default)
  is what ``evaluate`` runs: mmdet3d's post-processing and the Autoware node's on the same head
  outputs, so the loop does the node's decode and NMS on top of the pipeline's work;
  ``--views mmdet3d`` runs only what the pipeline figure runs (repeat the option for both).

Also runs ``python -m centerpoint_deploy evaluate`` once per sweep count (PyTorch fp32 with the
demo checkpoint) to report the CLI's start-up: process start to the first frame (imports,
model load, ground-truth load, cache check; target < 3 s). Writes ``throughput.json`` and
prints a table. Runs on CPU (``--device cpu``) as well as CUDA.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from centerpoint_deploy.benchmark.run import benchmark_detector
from centerpoint_deploy.variant import VariantSpec, build_detector
from centerpoint_deploy.cli.app import prepare_process
from centerpoint_deploy.config import load_config
from centerpoint_deploy.data import loader, open_dataset
from centerpoint_deploy.data.synthetic import LidarConfig, WorldConfig, generate_dataset
from centerpoint_deploy.evaluate.io import load_metric_config
from centerpoint_deploy.evaluate.runner import evaluate_backends
from centerpoint_deploy.job.inputs import DEMO_CHECKPOINT
from centerpoint_deploy.postprocess.modes import default_views

REPO = Path(__file__).resolve().parents[1]


def _dataset(root: Path, frames: int, sweeps: int, beams: int, columns: int) -> Path:
    """A synthetic T4 scene with ``frames`` key frames, each with at least ``sweeps`` earlier sweeps."""
    folder = root / f"synth-{sweeps}sweeps"
    if not folder.exists():
        generate_dataset(folder, 1, frames, 0, LidarConfig(beams=beams, columns=columns), WorldConfig(),
                         key_frame_interval=5, lead_in_sweeps=max(sweeps, 1))
    return folder


def _startup(dataset: Path, config: str, checkpoint: Path, device: str, out: Path) -> float | None:
    """The evaluate CLI's process start -> first frame (its report's ``startup_s``)."""
    command = [sys.executable, "-m", "centerpoint_deploy", "evaluate", "--dataset", str(dataset), "--config", config,
               "--checkpoint", str(checkpoint), "--device", device, "--out", str(out), "--no-plots", "--no-cache",
               "--max-frames", "4"]
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    return json.loads((out / "comparison.json").read_text())["throughput"]["startup_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="demo")
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the demo checkpoint (demo config)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--variant", action="append", help="benchmark variant strings (default: pytorch:fp32)")
    parser.add_argument("--sweeps", type=int, action="append", help="sweep counts (default: 1 and 10)")
    parser.add_argument("--frames", type=int, default=80)
    parser.add_argument("--beams", type=int, default=64)
    parser.add_argument("--columns", type=int, default=1800)
    parser.add_argument("--workers", type=int, action="append",
                        help="reader processes (default: the loader's default_workers); repeat the option for an A/B "
                             "in one process")
    parser.add_argument("--batch-size", type=int, action="append", help="evaluate's batch sizes (default: 1)")
    parser.add_argument("--views", action="append", choices=("both", "mmdet3d"),
                        help="the loop's post-processing views (default: both, as evaluate runs)")
    parser.add_argument("--device-merge-files", type=int, action="append",
                        help="merge frames reading at least this many files on the device (default: the loader's "
                             "DEVICE_MERGE_FILES; 2 merges one-sweep frames there too, as round 17 did); repeat "
                             "the option for an A/B in one process")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    prepare_process()  # the evaluate command's process settings
    device = torch.device(args.device)
    checkpoint = args.checkpoint or DEMO_CHECKPOINT
    warmup = args.warmup if args.warmup is not None else (10 if device.type == "cuda" else 1)
    iterations = args.iterations if args.iterations is not None else (100 if device.type == "cuda" else 5)
    base = load_config(args.config)
    merge_default = loader.DEVICE_MERGE_FILES
    rows = []
    for sweeps in args.sweeps or [1, 10]:
        config = dataclasses.replace(base, points=dataclasses.replace(base.points, sweeps_num=sweeps))
        folder = _dataset(args.out / "data", args.frames, sweeps, args.beams, args.columns)
        dataset = open_dataset(folder, class_names=config.class_names, sweeps_num=sweeps,
                               load_dim=config.points.load_dim)
        first = torch.from_numpy(dataset[0].points[:, list(config.points.use_dim)].copy())
        startup = _startup(folder, args.config, checkpoint, args.device, args.out / f"cli-{sweeps}") \
            if sweeps == base.points.sweeps_num else None
        for text in args.variant or ["pytorch:fp32"]:
            spec = VariantSpec.parse(text, device=device)
            detector = build_detector(spec, config, checkpoint=checkpoint)
            begin = time.perf_counter()
            with detector:
                pipeline = benchmark_detector(spec.name, spec, detector, first, warmup=warmup, iterations=iterations)
                prepared = time.perf_counter() - begin
                pipeline_fps = 1000.0 / pipeline.end_to_end.p50
                for batch_size, views, merge_files, workers in itertools.product(
                        args.batch_size or [1], args.views or ["both"], args.device_merge_files or [merge_default],
                        args.workers or [None]):
                    loader.DEVICE_MERGE_FILES = merge_files
                    out = args.out / f"eval-{sweeps}-{spec.name}-b{batch_size}-{views}-m{merge_files}-w{workers}"
                    chosen = None if views == "both" else {"variant": default_views(config)[:1]}
                    # the first pass captures (and compiles) a graph for every batch and cloud size the
                    # frames need, as the pipeline figure's warm-up runs do; the second is the steady state
                    first_out = out.with_name(out.name + "-first")
                    evaluate_backends(dataset, {"variant": detector}, first_out,
                                      load_metric_config("t4", config.class_names), cache=False, plots=False,
                                      workers=workers, batch_size=batch_size, views=chosen)
                    first_pass = json.loads((first_out / "comparison.json").read_text())["throughput"]
                    evaluate_backends(dataset, {"variant": detector}, out, load_metric_config("t4", config.class_names),
                                      cache=False, plots=False, workers=workers, batch_size=batch_size,
                                      views=chosen)
                    loop = json.loads((out / "comparison.json").read_text())["throughput"]
                    rows.append({"sweeps": sweeps, "variant": spec.name, "batch_size": batch_size, "views": views,
                                 "points": int(first.shape[0]), "frames": len(dataset),
                                 "pipeline_p50_ms": pipeline.end_to_end.p50, "pipeline_frames_per_s": pipeline_fps,
                                 "evaluate_frames_per_s": loop["frames_per_s"],
                                 "first_pass_frames_per_s": first_pass["frames_per_s"],
                                 "ratio": loop["frames_per_s"] / pipeline_fps, "read_s": loop["read_s"],
                                 "waited_s": loop["wait_s"], "backend_frames_per_s": loop["backend_frames_per_s"],
                                 "workers": loop["per_rank"][0]["workers"],
                                 "device_merge_files": merge_files, "benchmark_and_compile_s": prepared,
                                 "cli_startup_s": startup})
                    print(json.dumps(rows[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "throughput.json").write_text(json.dumps({"device": str(device), "torch": torch.__version__,
                                                          "gpu": torch.cuda.get_device_name(device)
                                                          if device.type == "cuda" else None, "rows": rows}, indent=1))
    print("\n| sweeps | variant | batch | views | merged on the device from files | readers | points "
          "| pipeline frames/s | evaluate frames/s | ratio | waited s | first pass frames/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['sweeps']} | {r['variant']} | {r['batch_size']} | {r['views']} | {r['device_merge_files']} "
              f"| {r['workers']} | {r['points']} | "
              f"{r['pipeline_frames_per_s']:.3g} | {r['evaluate_frames_per_s']:.3g} | {r['ratio']:.2f} | "
              f"{r['waited_s']:.2f} | {r['first_pass_frames_per_s']:.3g} |")


if __name__ == "__main__":
    main()
