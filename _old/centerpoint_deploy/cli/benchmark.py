"""``centerpoint-deploy benchmark``: per-stage and end-to-end latency of pipeline variants.

Python equivalent::

    config = load_config("j6gen2_base")
    points = torch.from_numpy(model_columns(lidar_frame(seed=0), config))
    report = benchmark_variants(config, ["pytorch:fp32", "pytorch:fp16+channels_last+cuda_graph+static"],
                                points, device=torch.device("cuda"), warmup=20, iterations=200,
                                scaling=ScalingPlan(), out_dir=Path("bench"))
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Optional

import typer

from centerpoint_deploy.cli.common import CONFIG_HELP, DEPLOY_DIR_HELP, DEVICE_HELP, bounded, resolve_device
from centerpoint_deploy.outputs import folder_lock, prepare_dir


def benchmark(
    config: str = typer.Option(..., "--config", "-c", help=CONFIG_HELP),
    variant: list[str] = typer.Option([], "--variant", "-v",
                                      help="Repeat; '<backend>:<precision>[+flag...]', e.g. "
                                           "pytorch:fp16+channels_last+cuda_graph+static (docs/benchmarks.md). "
                                           "Default: a set per device."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Weights for pytorch variants (default: random)."),
    deploy_dir: Optional[Path] = typer.Option(None, "--deploy-dir", help=DEPLOY_DIR_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    points: Optional[Path] = typer.Option(None, "--points", help="A point file to time (default: a synthetic frame)."),
    sweeps: int = typer.Option(1, "--sweeps", callback=bounded(1), help="Synthetic sweeps merged into the frame."),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic frame."),
    warmup: Optional[int] = typer.Option(None, "--warmup", callback=bounded(0),
                                         help="Untimed runs before each measurement (default: 1 on CPU, 10 on CUDA)."),
    iterations: Optional[int] = typer.Option(None, "--iterations", "-n", callback=bounded(1),
                                             help="Timed runs per measurement (default: 5 on CPU, 100 on CUDA)."),
    scaling: bool = typer.Option(False, "--scaling/--no-scaling", help="Also scale points per frame and grid size."),
    scaling_points: list[int] = typer.Option([], "--scaling-points", callback=bounded(1),
                                             help="Repeat; points per frame (default: 10k to 1M)."),
    scaling_sweeps: list[int] = typer.Option([], "--scaling-sweeps", callback=bounded(1),
                                             help="Repeat; merged sweeps (default: 1, 3, 10)."),
    scaling_grid: list[int] = typer.Option([], "--scaling-grid", callback=bounded(1),
                                           help="Repeat; BEV cells per side (default: 256 to 1024)."),
    scaling_variant: list[str] = typer.Option([], "--scaling-variant",
                                              help="Repeat; variants to scale (default: the first and the fastest)."),
    scaling_iterations: int = typer.Option(20, "--scaling-iterations", callback=bounded(1), help="Timed runs per scaling size."),
    threads: Optional[int] = typer.Option(None, "--threads", callback=bounded(1), help="torch CPU threads (default: torch's)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write benchmark.json/.md and plots here."),
    no_plots: bool = typer.Option(False, "--no-plots", help="Skip the PNG plots."),
) -> None:
    """Time every pipeline stage and the whole pipeline for each variant; optionally scale."""
    if out is not None:
        prepare_dir(out)
    target = resolve_device(device)

    import dataclasses

    import numpy as np
    import torch
    from rich.console import Console

    from centerpoint_deploy.benchmark.inputs import lidar_frame, model_columns
    from centerpoint_deploy.benchmark.render import rich_tables
    from centerpoint_deploy.benchmark.run import ScalingPlan, benchmark_variants
    from centerpoint_deploy.benchmark.defaults import DEFAULT_RUNS, default_variants
    from centerpoint_deploy.config import load_config
    from centerpoint_deploy.clouds import file_cloud
    from centerpoint_deploy.terminal import plain_console, progress_bars

    model_config = load_config(config)
    warmup = DEFAULT_RUNS[target.type][0] if warmup is None else warmup
    iterations = DEFAULT_RUNS[target.type][1] if iterations is None else iterations
    variants, skipped = (list(variant), {}) if variant else default_variants(target)
    if threads is not None:
        torch.set_num_threads(threads)
    console = plain_console()
    plan = None
    if scaling:
        given = {"points": tuple(scaling_points), "sweeps": tuple(scaling_sweeps), "grid": tuple(scaling_grid)}
        plan = dataclasses.replace(ScalingPlan(), **{k: v for k, v in given.items() if v},
                                   variants=tuple(scaling_variant), iterations=scaling_iterations)
    with tempfile.TemporaryDirectory() as scratch:
        if points is None:
            cloud = model_columns(lidar_frame(seed=seed, sweeps=sweeps), model_config)
            frame = {"source": f"synthetic 64-beam LiDAR ({sweeps} sweep{'s' if sweeps > 1 else ''}, seed {seed})",
                     "sweeps": sweeps, "seed": seed}
            point_file = Path(scratch) / "frame.bin"  # for the 'read' stage
            np.pad(cloud, ((0, 0), (0, model_config.points.load_dim - cloud.shape[1]))).astype(np.float32).tofile(point_file)
        else:
            cloud = file_cloud(points, model_config).numpy()
            frame, point_file = {"source": str(points)}, points
        with (folder_lock(out, "centerpoint-deploy benchmark") if out is not None else contextlib.nullcontext(),
              progress_bars(console) as progress):
            report = benchmark_variants(
                model_config, variants, torch.from_numpy(cloud), device=target, skipped=skipped,
                warmup=warmup, iterations=iterations, checkpoint=checkpoint, deploy_dir=deploy_dir, frame=frame,
                point_file=point_file, scaling=plan, out_dir=out, plots=not no_plots, log=console.print,
                progress=progress)
    stdout = Console(width=max(Console().width, 160), markup=False, highlight=False)
    for table in rich_tables(report):
        stdout.print(table)
    if out is not None:
        stdout.print(f"reports: {out / 'benchmark.json'}, {out / 'benchmark.md'}")
