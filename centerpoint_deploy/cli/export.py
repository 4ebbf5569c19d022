"""``centerpoint-deploy export`` and ``build-engine``: the deploy directory for Autoware.

Python equivalent::

    config = load_config("demo")
    model = build_model(config, checkpoint="epoch_50.pth")
    result = export_onnx(model, config, "deploy/", rot_y_axis_reference=True, checkpoint="epoch_50.pth")
    build_deploy_engines("deploy/", precision="fp16")   # needs TensorRT and a GPU
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import typer
from rich.console import Console

from centerpoint_deploy.cli.app import app
from centerpoint_deploy.config import load_config
from centerpoint_deploy.errors import ExportError
from centerpoint_deploy.export.bundle import AUTOWARE_FORMATS, check_bundle_options, node_precision
from centerpoint_deploy.export.manifest import ENGINE_FILES, load_manifest
from centerpoint_deploy.export.onnx_export import export_onnx
from centerpoint_deploy.export.tensorrt_build import build_deploy_engines, derive_profiles, precision_flags

#: Seed of ``--random-weights`` exports, so they are reproducible.
RANDOM_WEIGHTS_SEED = 0
_PRECISION_HELP = "fp32 (strict, TF32 off), tf32 or fp16 (Autoware's default)."


@app.command("export")
def export(
    config: str = typer.Option(..., "--config", "-c", help="Preset name, project .yaml or AWML/mmdet3d .py config."),
    out: Path = typer.Option(..., "--out", "-o", help="Deploy directory to write."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="mmdet3d/AWML checkpoint."),
    random_weights: bool = typer.Option(False, "--random-weights", help="Export a randomly initialised model (tests only)."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset (13-17)."),
    rot_y_axis_reference: bool = typer.Option(False, "--rot-y-axis-reference",
                                              help="Head emits dim as (w, l, h) and rot as (-cos, -sin), as Autoware decodes."),
    simplify: bool = typer.Option(False, "--simplify", help="Run onnxsim on both graphs."),
    atol: float = typer.Option(1e-4, "--atol", help="Largest allowed |ONNX Runtime - PyTorch| in the post-export check."),
    tensorrt: bool = typer.Option(False, "--tensorrt", help="Also build TensorRT engines (needs TensorRT and a GPU)."),
    precision: str = typer.Option("fp16", "--precision", help=_PRECISION_HELP),
    workspace_gb: float = typer.Option(1.0, "--workspace-gb", help="TensorRT builder workspace in GiB."),
    device: str = typer.Option("cpu", "--device", help="Device the PyTorch model is traced and checked on."),
    autoware_format: str = typer.Option("v4.1", "--autoware-format",
                                        help=f"Bundle layout: {' or '.join(AUTOWARE_FORMATS)} (legacy: "
                                             "<model>_ml_package.param.yaml for nodes before bundle v4.1)."),
) -> None:
    """Export an Autoware model bundle (two ONNX files, the node's parameter files, deploy_metadata.yaml), checked against PyTorch."""
    from centerpoint_deploy.model import build_model

    if (checkpoint is None) == (not random_weights):
        raise ExportError("pass exactly one of --checkpoint PATH or --random-weights (random weights: tests only)")
    if tensorrt:
        precision_flags(precision)  # fail before exporting, not after
    check_bundle_options(autoware_format, node_precision(precision))
    model_config = load_config(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        model = build_model(model_config, checkpoint=checkpoint, device=device)
    result = export_onnx(model, model_config, out, opset=opset, rot_y_axis_reference=rot_y_axis_reference,
                         simplify=simplify, atol=atol, checkpoint=checkpoint, autoware_format=autoware_format,
                         precision=node_precision(precision))
    console = Console(stderr=True, highlight=False)
    console.print(f"exported {model_config.name} to {out} ({autoware_format} bundle, opset {opset}, "
                  f"rot_y_axis_reference={rot_y_axis_reference}, simplified={simplify})")
    for name, diff in result.max_abs_diff.items():
        console.print(f"  max |onnxruntime - pytorch| {name}: {diff:.3g}")
    for part, problems in result.tensorrt_problems.items():
        for problem in problems:
            console.print(f"[yellow]warning:[/] {part} graph: TensorRT would refuse {problem}")
    if tensorrt:
        _build(out, precision, workspace_gb, console)


@app.command("build-engine")
def build_engine(
    deploy_dir: Path = typer.Argument(..., help="Deploy directory written by 'export'."),
    precision: str = typer.Option("fp16", "--precision", help=_PRECISION_HELP),
    workspace_gb: float = typer.Option(1.0, "--workspace-gb", help="TensorRT builder workspace in GiB."),
    min_voxels: int = typer.Option(1000, "--min-voxels", help="Smallest voxel count of the encoder profile."),
    opt_voxels: Optional[int] = typer.Option(None, "--opt-voxels", help="Voxel count to tune for (default max_voxels / 4)."),
    static_encoder: bool = typer.Option(False, "--static-encoder",
                                        help="Autoware's profile: min = opt = max = [max_voxels, 32, F]."),
    max_batch: int = typer.Option(1, "--max-batch", help="Largest head batch."),
    timing_cache: Optional[Path] = typer.Option(None, "--timing-cache", help="Tactic timing cache file to reuse."),
) -> None:
    """Build TensorRT engines for both graphs of a deploy directory and list them in its manifest."""
    config = load_manifest(deploy_dir).model_config()
    profiles = derive_profiles(config, min_voxels=min_voxels, opt_voxels=opt_voxels,
                               static_encoder=static_encoder, max_batch=max_batch)
    _build(deploy_dir, precision, workspace_gb, Console(stderr=True, highlight=False), profiles, timing_cache)


def _build(deploy_dir: Path, precision: str, workspace_gb: float, console: Console,
           profiles: dict | None = None, timing_cache: Path | None = None) -> None:
    if not workspace_gb > 0:
        raise ExportError(f"--workspace-gb = {workspace_gb} must be > 0")
    manifest = build_deploy_engines(deploy_dir, precision=precision,  # type: ignore[arg-type]
                                    workspace_bytes=int(workspace_gb * (1 << 30)),
                                    profiles=profiles, timing_cache=timing_cache)
    for part, record in manifest.engines.items():
        console.print(f"built {deploy_dir / ENGINE_FILES[part]} ({record.precision}, TensorRT "
                      f"{record.tensorrt_version}, profile {record.profile})")
