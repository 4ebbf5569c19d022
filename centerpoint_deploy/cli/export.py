"""``centerpoint-deploy export`` and ``build-engine``: the deploy directory for Autoware.

Python equivalent::

    config = load_config("demo")
    model = build_model(config, checkpoint="epoch_50.pth")
    result = export_onnx(model, config, "deploy/", rot_y_axis_reference=True, checkpoint="epoch_50.pth")
    build_deploy_engines("deploy/", precision="fp16")   # needs TensorRT and a GPU
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from centerpoint_deploy.cli.common import CHECKPOINT_HELP, CONFIG_HELP, DEVICE_HELP, RANDOM_WEIGHTS_SEED, bounded, positive, resolve_checkpoint, resolve_device
from centerpoint_deploy.errors import ExportError
from centerpoint_deploy.outputs import folder_lock, prepare_dir

if TYPE_CHECKING:
    from rich.console import Console

_PRECISION_HELP = "fp32 (strict, TF32 off), tf32 or fp16 (Autoware's default)."


def export(
    config: str = typer.Option(..., "--config", "-c", help=CONFIG_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Deploy directory to write."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help=CHECKPOINT_HELP),
    random_weights: bool = typer.Option(False, "--random-weights", help="Export a randomly initialised model (tests only)."),
    opset: int = typer.Option(17, "--opset", callback=bounded(13, 17), help="ONNX opset (13-17)."),
    rot_y_axis_reference: bool = typer.Option(False, "--rot-y-axis-reference",
                                              help="Head emits dim as (w, l, h) and rot as (-cos, -sin), as Autoware decodes."),
    simplify: bool = typer.Option(False, "--simplify", help="Run onnxsim on both graphs."),
    atol: float = typer.Option(1e-4, "--atol", callback=positive,
                               help="Largest allowed |ONNX Runtime - PyTorch| in the post-export check."),
    tensorrt: bool = typer.Option(False, "--tensorrt", help="Also build TensorRT engines (needs TensorRT and a GPU)."),
    precision: str = typer.Option("fp16", "--precision", help=f"TensorRT precision with --tensorrt: {_PRECISION_HELP}"),
    workspace_gb: float = typer.Option(1.0, "--workspace-gb", callback=positive,
                                       help="TensorRT builder workspace in GiB."),
    device: str = typer.Option("auto", "--device", help=f"Where the model is traced and checked: {DEVICE_HELP}"),
) -> None:
    """Export the two Autoware ONNX files, the Autoware param file and manifest.json, checked against PyTorch."""
    from centerpoint_deploy.export.tensorrt_build import precision_flags

    precision_flags(precision)  # refuse a bad --precision before exporting, with or without --tensorrt
    prepare_dir(out)
    weights = resolve_checkpoint(checkpoint, config, random_weights, needed=True)
    target = resolve_device(device)

    import torch
    from rich.console import Console

    from centerpoint_deploy.config import load_config
    from centerpoint_deploy.export.onnx_export import export_onnx
    from centerpoint_deploy.model import build_model
    from centerpoint_deploy.terminal import progress_bars

    model_config = load_config(config)
    console = Console(stderr=True, markup=False, highlight=False)
    with folder_lock(out, "centerpoint-deploy export"):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            model = build_model(model_config, checkpoint=weights, device=target)
        with progress_bars(console) as progress:
            result = export_onnx(model, model_config, out, opset=opset, rot_y_axis_reference=rot_y_axis_reference,
                                 simplify=simplify, atol=atol, checkpoint=weights, progress=progress)
        console.print(f"exported {model_config.name} from {weights or 'random weights'} to {out} on {target} "
                      f"(opset {opset}, rot_y_axis_reference={rot_y_axis_reference}, simplified={simplify})")
        for name, diff in result.max_abs_diff.items():
            console.print(f"  max |onnxruntime - pytorch| {name}: {diff:.3g}")
        for part, problems in result.tensorrt_problems.items():
            for problem in problems:
                console.print(f"warning: {part} graph: TensorRT would refuse {problem}", style="yellow")
        if tensorrt:
            _build(out, precision, workspace_gb, console)


def build_engine(
    deploy_dir: Path = typer.Argument(..., help="Deploy directory written by 'export'."),
    precision: str = typer.Option("fp16", "--precision", help=_PRECISION_HELP),
    workspace_gb: float = typer.Option(1.0, "--workspace-gb", callback=positive,
                                       help="TensorRT builder workspace in GiB."),
    min_voxels: int = typer.Option(1000, "--min-voxels", callback=bounded(1), help="Smallest voxel count of the encoder profile."),
    opt_voxels: Optional[int] = typer.Option(None, "--opt-voxels", callback=bounded(1),
                                             help="Voxel count to tune for (default max_voxels / 4)."),
    static_encoder: bool = typer.Option(False, "--static-encoder",
                                        help="Autoware's profile: min = opt = max = [max_voxels, 32, F]."),
    max_batch: int = typer.Option(1, "--max-batch", callback=bounded(1), help="Largest head batch."),
    timing_cache: Optional[Path] = typer.Option(None, "--timing-cache", help="Tactic timing cache file to reuse."),
) -> None:
    """Build TensorRT engines for both graphs of a deploy directory and list them in its manifest."""
    from rich.console import Console

    from centerpoint_deploy.export.manifest import load_manifest
    from centerpoint_deploy.export.tensorrt_build import derive_profiles, precision_flags

    precision_flags(precision)
    config = load_manifest(deploy_dir).model_config()
    prepare_dir(deploy_dir, "deploy directory")
    profiles = derive_profiles(config, min_voxels=min_voxels, opt_voxels=opt_voxels,
                               static_encoder=static_encoder, max_batch=max_batch)
    with folder_lock(deploy_dir, "centerpoint-deploy build-engine"):
        _build(deploy_dir, precision, workspace_gb, Console(stderr=True, markup=False, highlight=False),
               profiles, timing_cache)


def _build(deploy_dir: Path, precision: str, workspace_gb: float, console: "Console",
           profiles: dict | None = None, timing_cache: Path | None = None) -> None:
    from centerpoint_deploy.export.manifest import ENGINE_FILES
    from centerpoint_deploy.export.tensorrt_build import build_deploy_engines

    manifest = build_deploy_engines(deploy_dir, precision=precision,  # type: ignore[arg-type]
                                    workspace_bytes=int(workspace_gb * (1 << 30)),
                                    profiles=profiles, timing_cache=timing_cache)
    for part, record in manifest.engines.items():
        console.print(f"built {deploy_dir / ENGINE_FILES[part]} ({record.precision}, TensorRT "
                      f"{record.tensorrt_version}, profile {record.profile})")
