"""``centerpoint-deploy benchmark``: per-stage and end-to-end latency of pipeline variants.

Python equivalent::

    config = load_config("j6gen2_base")
    points = torch.from_numpy(model_columns(lidar_frame(seed=0), config))
    report = benchmark_variants(config, ["pytorch:fp32", "pytorch:fp16+channels_last+cuda_graph+static"],
                                points, device=torch.device("cuda"), warmup=20, iterations=200,
                                scaling=ScalingPlan(), out_dir=Path("bench"))
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import typer
from rich.console import Console

from centerpoint_deploy.backends.factory import resolve_device
from centerpoint_deploy.benchmark.inputs import lidar_frame, model_columns
from centerpoint_deploy.benchmark.render import rich_tables
from centerpoint_deploy.benchmark.run import ScalingPlan, benchmark_variants
from centerpoint_deploy.benchmark.defaults import DEFAULT_RUNS, default_variants
from centerpoint_deploy.cli.app import app
from centerpoint_deploy.config import load_config
from centerpoint_deploy.data.pointcloud import read_points


@app.command("benchmark")
def benchmark(
    config: str = typer.Option(..., "--config", "-c", help="Preset name, project .yaml or AWML/mmdet3d .py config."),
    variant: list[str] = typer.Option([], "--variant", "-v",
                                      help="Repeat; '<backend>:<precision>[+flag...]', e.g. "
                                           "pytorch:fp16+channels_last+cuda_graph+static (docs/benchmarks.md). "
                                           "Default: a set per device."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Weights for pytorch variants (default: random)."),
    deploy_dir: Optional[Path] = typer.Option(None, "--deploy-dir", help="Exported ONNX/engines (onnxruntime, tensorrt)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N."),
    points: Optional[Path] = typer.Option(None, "--points", help="A point file to time (default: a synthetic frame)."),
    sweeps: int = typer.Option(1, "--sweeps", min=1, help="Synthetic sweeps merged into the frame."),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic frame."),
    warmup: Optional[int] = typer.Option(None, "--warmup", min=0,
                                         help="Untimed runs before each measurement (default: 1 on CPU, 10 on CUDA)."),
    iterations: Optional[int] = typer.Option(None, "--iterations", "-n", min=1,
                                             help="Timed runs per measurement (default: 5 on CPU, 100 on CUDA)."),
    scaling: bool = typer.Option(False, "--scaling/--no-scaling", help="Also scale points per frame and grid size."),
    scaling_points: list[int] = typer.Option(list(ScalingPlan.points), "--scaling-points", help="Repeat; points per frame."),
    scaling_sweeps: list[int] = typer.Option(list(ScalingPlan.sweeps), "--scaling-sweeps", help="Repeat; merged sweeps."),
    scaling_grid: list[int] = typer.Option(list(ScalingPlan.grid), "--scaling-grid", help="Repeat; BEV cells per side."),
    scaling_variant: list[str] = typer.Option([], "--scaling-variant",
                                              help="Repeat; variants to scale (default: the first and the fastest)."),
    scaling_iterations: int = typer.Option(20, "--scaling-iterations", min=1, help="Timed runs per scaling size."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch CPU threads (default: torch's)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write benchmark.json/.md and plots here."),
    no_plots: bool = typer.Option(False, "--no-plots", help="Skip the PNG plots."),
) -> None:
    """Time every pipeline stage and the whole pipeline for each variant; optionally scale."""
    model_config = load_config(config)
    target = resolve_device(device)
    warmup = DEFAULT_RUNS[target.type][0] if warmup is None else warmup
    iterations = DEFAULT_RUNS[target.type][1] if iterations is None else iterations
    variants, skipped = (list(variant), {}) if variant else default_variants(target)
    if threads is not None:
        torch.set_num_threads(threads)
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory() as scratch:
        if points is None:
            cloud = model_columns(lidar_frame(seed=seed, sweeps=sweeps), model_config)
            frame = {"source": f"synthetic 64-beam LiDAR ({sweeps} sweep{'s' if sweeps > 1 else ''}, seed {seed})",
                     "sweeps": sweeps, "seed": seed}
            point_file = Path(scratch) / "frame.bin"  # for the 'read' stage
            np.pad(cloud, ((0, 0), (0, model_config.points.load_dim - cloud.shape[1]))).astype(np.float32).tofile(point_file)
        else:
            raw = read_points(points, model_config.points.load_dim)
            cloud = np.ascontiguousarray(raw[:, list(model_config.points.use_dim)], dtype=np.float32)
            frame, point_file = {"source": str(points)}, points
        plan = None
        if scaling:
            plan = ScalingPlan(points=tuple(scaling_points), sweeps=tuple(scaling_sweeps), grid=tuple(scaling_grid),
                               variants=tuple(scaling_variant), iterations=scaling_iterations)
        report = benchmark_variants(
            model_config, variants, torch.from_numpy(cloud), device=target, skipped=skipped,
            warmup=warmup, iterations=iterations, checkpoint=checkpoint, deploy_dir=deploy_dir, frame=frame,
            point_file=point_file, scaling=plan, out_dir=out, plots=not no_plots,
            log=lambda message: console.print(message, highlight=False))
    stdout = Console(width=max(Console().width, 160))
    for table in rich_tables(report):
        stdout.print(table)
    if out is not None:
        stdout.print(f"reports: {out / 'benchmark.json'}, {out / 'benchmark.md'}", highlight=False)
