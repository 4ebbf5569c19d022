"""``centerpoint-deploy verify``: compare exported backends with PyTorch, stage by stage.

Exit status 0 only when every backend passed every check; the reports are written either way.

Python equivalent::

    config = load_config("demo")
    reference = Detector(config, *create_backends("pytorch", config, checkpoint="epoch_50.pth")[:2])
    candidates = {"onnxruntime": create_backends("onnxruntime", config, deploy_dir="deploy")}
    frames = [torch.from_numpy(key_frame_points(read_points("0.pcd.bin", 5), config.points))]
    report = verify_backends(reference, candidates, frames, default_tolerances("fp32"),
                             DEFAULT_BOX_TOLERANCES["fp32"],
                             bisect_onnx={"encoder": "deploy/pts_voxel_encoder.onnx",
                                          "head": "deploy/pts_backbone_neck_head.onnx"})
    print_report(report)
    write_reports(report, "verify_out")
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from centerpoint_deploy.cli.common import CHECKPOINT_HELP, CONFIG_HELP, DEVICE_HELP, bounded, resolve_checkpoint, resolve_device
from centerpoint_deploy.errors import VerificationError
from centerpoint_deploy.outputs import folder_lock, prepare_dir

if TYPE_CHECKING:
    from torch import Tensor

    from centerpoint_deploy.config import ModelConfig
    from centerpoint_deploy.verify.compare import Tolerance

#: Precisions whose default tolerances ``--precision`` selects.
TOLERANCE_PRECISIONS = ("fp32", "fp16", "int8")


def _frames(config: "ModelConfig", points: list[Path], dataset: str | None, num_frames: int) -> list["Tensor"]:
    """Point clouds ``Tensor[N, len(use_dim)]`` from point files or ``num_frames`` frames spread over a dataset."""
    import torch

    from centerpoint_deploy.data import open_dataset
    from centerpoint_deploy.data.loader import load_clouds
    from centerpoint_deploy.data.pointcloud import key_frame_points, read_points
    from centerpoint_deploy.job.inputs import spread_indices

    if points:
        return [torch.from_numpy(key_frame_points(read_points(p, config.points.load_dim), config.points))
                for p in points]
    frames = open_dataset(dataset, class_names=config.class_names, sweeps_num=config.points.sweeps_num,
                          load_dim=config.points.load_dim)
    if len(frames) == 0:
        raise VerificationError(f"dataset '{dataset}' has no frames")
    return load_clouds(frames, spread_indices(len(frames), num_frames), config.points.use_dim)


def _precision(precision: str | None, backends: list[str], deploy_dir: Path) -> tuple[str, str]:
    """The precision to judge by, and why: as asked, else the ONNX files' (manifest), else fp16 for fp16
    TensorRT engines, else fp32."""
    from centerpoint_deploy.export.manifest import load_manifest

    if precision is not None:
        return precision, "--precision"
    exported = load_manifest(deploy_dir).precision
    if exported != "fp32":
        return exported, f"the ONNX files are {exported} (manifest)"
    if "tensorrt" in backends:
        engines = load_manifest(deploy_dir).engines
        if any(record.precision == "fp16" for record in engines.values()):
            return "fp16", "the TensorRT engines in the manifest are fp16"
    return "fp32", "default"


def _overrides(texts: list[str], num_tasks: int) -> dict[str, "Tolerance"]:
    """``--tol NAME=ATOL,RTOL`` values; NAME must be an output the verification compares."""
    from centerpoint_deploy import contract
    from centerpoint_deploy.verify.compare import parse_tolerance_override

    known = (contract.ENCODER_OUTPUT, *contract.head_output_names(num_tasks))
    overrides = dict(parse_tolerance_override(text) for text in texts)
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise VerificationError(f"--tol names {unknown} are not outputs of this model; known: {', '.join(known)}")
    return overrides


def verify(
    deploy_dir: Path = typer.Option(..., "--deploy-dir", help="Export directory (deploy_metadata.yaml, ONNX files, engines)."),
    config: str = typer.Option(..., "--config", "-c", help=CONFIG_HELP),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint",
                                              help=f"The checkpoint the deploy directory was exported from. {CHECKPOINT_HELP}"),
    backend: list[str] = typer.Option(["onnxruntime"], "--backend", "-b",
                                      help="Backend to check (repeatable): onnxruntime, tensorrt."),
    device: str = typer.Option("auto", "--device", help=f"Reference and backends: {DEVICE_HELP}"),
    points: list[Path] = typer.Option([], "--points", help="Point file to verify on (repeatable)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="T4 scene(s), split file or info .pkl instead of --points."),
    num_frames: int = typer.Option(3, "--frames", callback=bounded(1),
                                   help="Frames taken from --dataset, spread evenly over it (first and last included)."),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32, fp16 or int8 default tolerances "
                                            "(default: the export's precision; fp16 for fp16 TensorRT engines). "
                                            "int8: the reference is PyTorch fake-quantized with the ONNX's Q/DQ scales."),
    atol: Optional[float] = typer.Option(None, "--atol", callback=bounded(0.0), help="Override the default absolute tolerance."),
    rtol: Optional[float] = typer.Option(None, "--rtol", callback=bounded(0.0), help="Override the default relative tolerance."),
    tol: list[str] = typer.Option([], "--tol", help="Per-output tolerance NAME=ATOL,RTOL (repeatable), e.g. heatmap=1e-3,1e-2."),
    bisect: bool = typer.Option(False, "--bisect", help="On failure, find the first diverging layer of the ONNX graphs."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for verification.json, verification.md and plots."),
) -> None:
    """Verify exported backends against PyTorch on the same inputs, stage by stage and box by box."""
    prepare_dir(out)
    if "pytorch" in backend or len(set(backend)) != len(backend):
        raise VerificationError(f"--backend must be distinct non-reference kinds (the reference is PyTorch), got {backend}")
    if precision is not None and precision not in TOLERANCE_PRECISIONS:
        raise VerificationError(f"--precision {precision!r} is unknown; allowed: {', '.join(TOLERANCE_PRECISIONS)}")
    if bool(points) == (dataset is not None):
        raise VerificationError("give the frames either as --points FILE (repeatable) or as --dataset SPEC, "
                                f"not {'both' if points else 'neither'}")
    weights = resolve_checkpoint(checkpoint, config, False, needed=True)
    target = resolve_device(device)

    from rich.console import Console

    from centerpoint_deploy.backends.factory import create_backends
    from centerpoint_deploy.config import load_config
    from centerpoint_deploy.detector import Detector
    from centerpoint_deploy.export.manifest import ONNX_FILES, load_manifest, sha256_file
    from centerpoint_deploy.verify.boxes import DEFAULT_BOX_TOLERANCES
    from centerpoint_deploy.verify.compare import Tolerances, default_tolerances
    from centerpoint_deploy.terminal import progress_bars
    from centerpoint_deploy.verify.report import print_report, write_reports
    from centerpoint_deploy.verify.run import verify_backends

    model_config = load_config(config)
    overrides = _overrides(tol, len(model_config.head.tasks))
    manifest = load_manifest(deploy_dir)
    if manifest.checkpoint_sha256 is not None and sha256_file(weights) != manifest.checkpoint_sha256:
        raise VerificationError(f"{deploy_dir} was exported from a checkpoint with sha256 {manifest.checkpoint_sha256[:12]}..., "
                                f"but {weights} has {sha256_file(weights)[:12]}...; verify against the exported checkpoint")
    chosen, why = _precision(precision, backend, deploy_dir)
    tolerances = default_tolerances(chosen)
    if atol is not None or rtol is not None:
        base = tolerances.default
        tolerances = Tolerances(replace(base, atol=base.atol if atol is None else atol,
                                        rtol=base.rtol if rtol is None else rtol))
    tolerances = tolerances.with_overrides(overrides)
    frames = _frames(model_config, points, dataset, num_frames)

    encoder, head, _ = create_backends("pytorch", model_config, checkpoint=weights, device=target)
    if chosen == "int8":  # judged against the same quantization in PyTorch, so bisection works layer by layer
        import onnx

        from centerpoint_deploy.backends.pytorch import TorchEncoderBackend, TorchHeadBackend
        from centerpoint_deploy.verify.fake_quant import fake_quant_model

        quantized = fake_quant_model(encoder.model, [onnx.load(str(manifest.onnx_path(part))) for part in ONNX_FILES])
        encoder, head = TorchEncoderBackend(quantized, model_config, target), TorchHeadBackend(quantized, model_config, target)
        why += "; reference: PyTorch fake-quantized with the ONNX's Q/DQ scales"
    reference = Detector(model_config, encoder, head)
    candidates = {kind: create_backends(kind, model_config, deploy_dir=deploy_dir, device=target) for kind in backend}
    bisect_onnx = {part: deploy_dir / name for part, name in ONNX_FILES.items()} if bisect else None
    console = Console(width=max(Console().width, 150))
    console.print(f"verifying {', '.join(backend)} against PyTorch ({weights}) on {len(frames)} frame(s), device "
                  f"{target}, {chosen} tolerances ({why})", markup=False, highlight=False)
    try:
        with folder_lock(out, "centerpoint-deploy verify"):
            with progress_bars(console) as progress:
                report = verify_backends(reference, candidates, frames, tolerances, DEFAULT_BOX_TOLERANCES[chosen],
                                         bisect_onnx=bisect_onnx, bisect_device=target, progress=progress)
            print_report(report, console)
            written = write_reports(report, out)
    finally:
        reference.close()
        for enc, hd, _ in candidates.values():
            enc.close()
            hd.close()
    console.print(f"reports: {', '.join(str(p) for p in written.values())}", markup=False, highlight=False)
    if not report.passed:
        raise typer.Exit(1)
