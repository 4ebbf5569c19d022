"""``centerpoint-deploy detect``: boxes for point files, as JSON.

Python equivalent::

    config = load_config("demo")
    with build_detector(VariantSpec.parse("pytorch"), config, checkpoint="epoch_50.pth") as detector:
        boxes = detect_point_files(detector, ["0.pcd.bin"])
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from centerpoint_deploy.cli.common import BACKEND_HELP, CHECKPOINT_HELP, CONFIG_HELP, DEPLOY_DIR_HELP, DEVICE_HELP, RANDOM_WEIGHTS_SEED, bounded, resolve_checkpoint, resolve_device, runs_checkpoint
from centerpoint_deploy.outputs import prepare_file, write_text


def detect(
    point_files: list[Path] = typer.Argument(..., help="Point files: .bin / .pcd.bin (load_dim float32 per point), .pcd, .npy."),
    config: str = typer.Option(..., "--config", "-c", help=CONFIG_HELP),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help=CHECKPOINT_HELP),
    backend: str = typer.Option("pytorch", "--backend", help=BACKEND_HELP),
    deploy_dir: Optional[Path] = typer.Option(None, "--deploy-dir", help=DEPLOY_DIR_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the JSON to this file instead of stdout."),
    random_weights: bool = typer.Option(False, "--random-weights", help="Randomly initialised model (smoke tests only)."),
    keep_time_lag: bool = typer.Option(False, "--keep-time-lag",
                                       help="Keep the file's time-lag column (sweeps already merged) instead of 0."),
    load_dim: Optional[int] = typer.Option(None, "--load-dim", callback=bounded(3),
                                           help="Floats per point in the files (default: the config's; 4 for KITTI)."),
    output_format: str = typer.Option("predictions", "--format",
                                      help="predictions: the box file 'score' reads (docs/evaluation.md), one sample "
                                           "per point file as given; records: {file: [{box, score, label}, ...]}."),
) -> None:
    """Detect 3D boxes in point files; writes them as JSON (--format).

    Boxes are [x, y, z, l, w, h, yaw, vx, vy] in the LiDAR frame, z at the box centre.
    """
    if output is not None:
        prepare_file(output, "--output")
    weights = resolve_checkpoint(checkpoint, config, random_weights, needed=runs_checkpoint(backend))
    target = resolve_device(device)

    from centerpoint_deploy.config import load_config
    from centerpoint_deploy.detector import detect_point_files
    from centerpoint_deploy.evaluate.io import check_detect_format, detect_output
    from centerpoint_deploy.variant import VariantSpec, build_detector

    check_detect_format(output_format)
    model_config = load_config(config)
    spec = VariantSpec.parse(backend, device=target)
    with build_detector(spec, model_config, checkpoint=weights, deploy_dir=deploy_dir,
                        seed=RANDOM_WEIGHTS_SEED) as detector:
        results = detect_point_files(detector, point_files, keep_time_lag=keep_time_lag, load_dim=load_dim)
    text = json.dumps(detect_output(results, model_config.class_names, output_format, {"backend": backend}), indent=1)
    if output is None:
        typer.echo(text)
        return
    write_text(output, text)
    total = sum(len(records) for records in results.values())
    typer.echo(f"wrote {total} boxes for {len(results)} file(s) to {output}", err=True)
