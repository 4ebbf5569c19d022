"""``centerpoint-deploy verify``: compare exported backends with PyTorch, stage by stage.

Exit status 0 only when every backend passed every check; the reports are written either way.

Python equivalent::

    config = load_config("demo")
    reference = build_detector(VariantSpec.parse("pytorch"), config, checkpoint="epoch_50.pth")
    candidates = {"onnxruntime": build_detector(VariantSpec.parse("onnxruntime"), config, deploy_dir="deploy")}
    frames = [file_cloud("0.pcd.bin", config)]
    tolerances, box_tolerance = verification_tolerances("fp32")
    report = verify_backends(reference, candidates, frames, tolerances, box_tolerance,
                             bisect_onnx={"encoder": "deploy/pts_voxel_encoder.onnx",
                                          "head": "deploy/pts_backbone_neck_head.onnx"})
    print_report(report)
    write_reports(report, "verify_out")
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from centerpoint_deploy.cli.common import CHECKPOINT_HELP, CONFIG_HELP, DEVICE_HELP, bounded, resolve_checkpoint, resolve_device
from centerpoint_deploy.errors import VerificationError
from centerpoint_deploy.outputs import folder_lock, prepare_dir

if TYPE_CHECKING:
    from torch import Tensor

    from centerpoint_deploy.config import ModelConfig
    from centerpoint_deploy.export.manifest import Manifest
    from centerpoint_deploy.variant import VariantSpec
    from centerpoint_deploy.verify.compare import Tolerance


def _frames(config: "ModelConfig", points: list[Path], dataset: str | None, num_frames: int) -> list["Tensor"]:
    """Point clouds ``Tensor[N, len(use_dim)]`` from point files or ``num_frames`` frames spread over a dataset."""
    from centerpoint_deploy.clouds import file_cloud
    from centerpoint_deploy.data import open_dataset
    from centerpoint_deploy.data.loader import load_clouds
    from centerpoint_deploy.job.inputs import spread_indices

    if points:
        return [file_cloud(p, config) for p in points]
    frames = open_dataset(dataset, class_names=config.class_names, sweeps_num=config.points.sweeps_num,
                          load_dim=config.points.load_dim)
    if len(frames) == 0:
        raise VerificationError(f"dataset '{dataset}' has no frames")
    return load_clouds(frames, spread_indices(len(frames), num_frames), config.points.use_dim)


def _precision(precision: str | None, specs: list["VariantSpec"], manifest: "Manifest") -> tuple[str, str]:
    """The tolerance class to judge by, and why: as asked, else the candidates' run precision
    (:func:`~centerpoint_deploy.verify.tolerances.judged_precision`, the rule the main job uses too)."""
    from centerpoint_deploy.verify.tolerances import judged_precision

    if precision is not None:
        return precision, "--precision"
    chosen = judged_precision(specs, manifest)
    if chosen == "fp32":
        return chosen, "default"
    if manifest.precision != "fp32":
        return chosen, f"the ONNX files are {manifest.precision} (manifest)"
    return chosen, "a backend runs in reduced precision"


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
                                      help="Backend variant to check (repeatable): onnxruntime, tensorrt, or "
                                           "'<backend>:<precision>[+flag...]' (docs/benchmarks.md)."),
    device: str = typer.Option("auto", "--device", help=f"Reference and backends: {DEVICE_HELP}"),
    points: list[Path] = typer.Option([], "--points", help="Point file to verify on (repeatable)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="T4 scene(s), split file or info .pkl instead of --points."),
    num_frames: int = typer.Option(3, "--frames", callback=bounded(1),
                                   help="Frames taken from --dataset, spread evenly over it (first and last included)."),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32, fp16, bf16 or int8 default tolerances "
                                            "(default: the export's precision; fp16 for fp16 TensorRT engines). "
                                            "int8: the reference is PyTorch fake-quantized with the ONNX's Q/DQ scales."),
    atol: Optional[float] = typer.Option(None, "--atol", callback=bounded(0.0), help="Override the default absolute tolerance."),
    rtol: Optional[float] = typer.Option(None, "--rtol", callback=bounded(0.0), help="Override the default relative tolerance."),
    tol: list[str] = typer.Option([], "--tol", help="Per-output tolerance NAME=ATOL,RTOL (repeatable), e.g. heatmap=1e-3,1e-2."),
    bisect: bool = typer.Option(False, "--bisect", help="On failure, find the first diverging layer of the ONNX graphs."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for verification.json, verification.md and plots."),
) -> None:
    """Verify exported backends against PyTorch on the same inputs, stage by stage and box by box."""
    from centerpoint_deploy.verify.tolerances import CLASSES

    prepare_dir(out)
    if precision is not None and precision not in CLASSES:
        raise VerificationError(f"--precision {precision!r} is unknown; allowed: {', '.join(CLASSES)}")
    if bool(points) == (dataset is not None):
        raise VerificationError("give the frames either as --points FILE (repeatable) or as --dataset SPEC, "
                                f"not {'both' if points else 'neither'}")
    weights = resolve_checkpoint(checkpoint, config, False, needed=True)
    target = resolve_device(device)

    from rich.console import Console

    from centerpoint_deploy.config import load_config
    from centerpoint_deploy.export.manifest import ONNX_FILES, load_manifest, sha256_file
    from centerpoint_deploy.model import build_model
    from centerpoint_deploy.terminal import progress_bars
    from centerpoint_deploy.variant import VariantSpec, build_detector
    from centerpoint_deploy.verify.report import print_report, write_reports
    from centerpoint_deploy.verify.run import verify_backends
    from centerpoint_deploy.verify.tolerances import verification_tolerances

    specs = [VariantSpec.parse(text, device=target) for text in backend]
    reference_spec = VariantSpec.parse("pytorch", device=target)
    if reference_spec in specs or len(set(specs)) != len(specs):
        raise VerificationError(f"--backend must be distinct variants other than the reference "
                                f"(the reference is PyTorch fp32), got {backend}")
    model_config = load_config(config)
    overrides = _overrides(tol, len(model_config.head.tasks))
    manifest = load_manifest(deploy_dir)
    if manifest.checkpoint_sha256 is not None and sha256_file(weights) != manifest.checkpoint_sha256:
        raise VerificationError(f"{deploy_dir} was exported from a checkpoint with sha256 {manifest.checkpoint_sha256[:12]}..., "
                                f"but {weights} has {sha256_file(weights)[:12]}...; verify against the exported checkpoint")
    chosen, why = _precision(precision, specs, manifest)
    tolerances, box_tolerance = verification_tolerances(chosen, atol=atol, rtol=rtol, overrides=overrides)
    frames = _frames(model_config, points, dataset, num_frames)

    reference_model = build_model(model_config, checkpoint=weights, device=target)
    if chosen == "int8":  # judged against the same quantization in PyTorch, so bisection works layer by layer
        import onnx

        from centerpoint_deploy.verify.fake_quant import fake_quant_model

        reference_model = fake_quant_model(reference_model, [onnx.load(str(manifest.onnx_path(part)))
                                                             for part in ONNX_FILES])
        why += "; reference: PyTorch fake-quantized with the ONNX's Q/DQ scales"
    reference = build_detector(reference_spec, model_config, model=reference_model)
    candidates = {text: build_detector(spec, model_config, checkpoint=weights if spec.runs_checkpoint else None,
                                       deploy_dir=None if spec.runs_checkpoint else deploy_dir)
                  for text, spec in zip(backend, specs)}
    bisect_onnx = {part: deploy_dir / name for part, name in ONNX_FILES.items()} if bisect else None
    # INT8: each quantized layer also alone on its node's own input (rounding does not compound there)
    int8_layers = {part: manifest.onnx_path(part) for part in ONNX_FILES} if chosen == "int8" else None
    console = Console(width=max(Console().width, 150))
    console.print(f"verifying {', '.join(backend)} against PyTorch ({weights}) on {len(frames)} frame(s), device "
                  f"{target}, {chosen} tolerances ({why})", markup=False, highlight=False)
    try:
        with folder_lock(out, "centerpoint-deploy verify"):
            with progress_bars(console) as progress:
                report = verify_backends(reference, candidates, frames, tolerances, box_tolerance,
                                         bisect_onnx=bisect_onnx, bisect_device=target, progress=progress,
                                         int8_layers=int8_layers)
            print_report(report, console)
            written = write_reports(report, out)
    finally:
        reference.close()
        for candidate in candidates.values():
            candidate.close()
    console.print(f"reports: {', '.join(str(p) for p in written.values())}", markup=False, highlight=False)
    if not report.passed:
        raise typer.Exit(1)
