"""``centerpoint-deploy detect``: boxes for point files, as JSON.

Python equivalent::

    config = load_config("demo")
    encoder, head, rot_ref = create_backends("pytorch", config, checkpoint="epoch_50.pth")
    with Detector(config, encoder, head, rot_y_axis_reference=rot_ref) as detector:
        boxes = detect_point_files(detector, ["0.pcd.bin"])
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch
import typer
from rich.console import Console

from centerpoint_deploy.backends.factory import SUPPORTED_KINDS, create_backends
from centerpoint_deploy.cli.app import app
from centerpoint_deploy.config import load_config
from centerpoint_deploy.detector import Detector, detect_point_files
from centerpoint_deploy.errors import BackendError
from centerpoint_deploy.evaluate.io import check_detect_format, detect_output

#: Seed of ``--random-weights`` models, so smoke tests are reproducible.
RANDOM_WEIGHTS_SEED = 0


@app.command("detect")
def detect(
    point_files: list[Path] = typer.Argument(..., help="Point files: .bin / .pcd.bin (load_dim float32 per point), .pcd, .npy."),
    config: str = typer.Option(..., "--config", "-c", help="Preset name, project .yaml or AWML/mmdet3d .py config."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="mmdet3d/AWML checkpoint (pytorch backend)."),
    backend: str = typer.Option("pytorch", "--backend", help=f"One of: {', '.join(SUPPORTED_KINDS)}."),
    deploy_dir: Optional[Path] = typer.Option(None, "--deploy-dir", help="Exported ONNX/engines (onnxruntime, tensorrt)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the JSON here instead of stdout."),
    random_weights: bool = typer.Option(False, "--random-weights", help="Randomly initialised model (smoke tests only)."),
    keep_time_lag: bool = typer.Option(False, "--keep-time-lag",
                                       help="Keep the file's time-lag column (sweeps already merged) instead of 0."),
    load_dim: Optional[int] = typer.Option(None, "--load-dim", min=3,
                                           help="Floats per point in the files (default: the config's; 4 for KITTI)."),
    output_format: str = typer.Option("predictions", "--format",
                                      help="predictions: the box file 'score' reads (docs/evaluation.md), one sample "
                                           "per point file as given; records: {file: [{box, score, label}, ...]}."),
) -> None:
    """Detect 3D boxes in point files; writes them as JSON (--format).

    Boxes are [x, y, z, l, w, h, yaw, vx, vy] in the LiDAR frame, z at the box centre.
    """
    check_detect_format(output_format)
    model_config = load_config(config)
    _check_weights(backend, checkpoint, deploy_dir, random_weights)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        encoder, head, rot_reference = create_backends(backend, model_config, checkpoint=checkpoint,
                                                       deploy_dir=deploy_dir, device=device)
    with Detector(model_config, encoder, head, rot_y_axis_reference=rot_reference) as detector:
        results = detect_point_files(detector, point_files, keep_time_lag=keep_time_lag, load_dim=load_dim)
    text = json.dumps(detect_output(results, model_config.class_names, output_format, {"backend": backend}), indent=1)
    if output is None:
        typer.echo(text)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    total = sum(len(records) for records in results.values())
    Console(stderr=True).print(f"wrote {total} boxes for {len(results)} file(s) to {output}", highlight=False)


def _check_weights(backend: str, checkpoint: Path | None, deploy_dir: Path | None, random_weights: bool) -> None:
    """Exactly one source of weights must fit the backend."""
    if backend == "pytorch":
        if checkpoint is None and not random_weights:
            raise BackendError("the pytorch backend needs --checkpoint PATH (or --random-weights for a smoke test)")
        if checkpoint is not None and random_weights:
            raise BackendError("pass either --checkpoint or --random-weights, not both")
    elif checkpoint is not None or random_weights:
        raise BackendError(f"--checkpoint/--random-weights are for the pytorch backend; "
                           f"'{backend}' runs the artifacts in --deploy-dir")
