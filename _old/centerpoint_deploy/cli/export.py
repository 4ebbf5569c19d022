"""``centerpoint-deploy export`` and ``build-engine``: the deploy directory for Autoware.

Python equivalent::

    config = load_config("demo")
    model = build_model(config, checkpoint="epoch_50.pth")
    result = export_onnx(model, config, "deploy/", rot_y_axis_reference=True, checkpoint="epoch_50.pth")
    build_deploy_engines("deploy/", precision="fp16")   # needs TensorRT and a GPU

    # fp16 / int8 graphs: calibration inputs from dataset frames first
    frames = open_dataset("data/t4", class_names=config.class_names)
    calibration = collect_calibration(model, config, [frames[i] for i in pick_frames(len(frames), 256)])
    export_onnx(model, config, "deploy-int8/", precision="int8", calibration=calibration,
                int8=Int8Options(method="max"))
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from centerpoint_deploy.cli.common import (CHECKPOINT_HELP, CONFIG_HELP, DEVICE_HELP, RANDOM_WEIGHTS_SEED, bounded,
                                           positive, resolve_checkpoint, resolve_device)
from centerpoint_deploy.errors import ExportError
from centerpoint_deploy.export.precision import PRECISIONS
from centerpoint_deploy.outputs import folder_lock, prepare_dir

if TYPE_CHECKING:
    from rich.console import Console

    from centerpoint_deploy.config import ModelConfig

_PRECISION_HELP = ("TensorRT 10 builder flags for an fp32 ONNX: fp32 (strict, TF32 off), tf32 or fp16; default the "
                   "ONNX's own precision. TensorRT 11 builds strongly typed from the ONNX (export --precision).")
_ONNX_PRECISION_HELP = ("Precision written into the ONNX files: fp32, fp16 (casts inside, float32 I/O) or int8 "
                        "(explicit Q/DQ); fp16/int8 need --dataset for calibration.")


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
                               help="Post-export check: allowed |ONNX Runtime - PyTorch| is atol + rtol * max|output|."),
    rtol: Optional[float] = typer.Option(None, "--rtol", callback=bounded(0),
                                         help="Post-export check: share of the output's largest magnitude allowed "
                                              "(default: 2e-5)."),
    precision: str = typer.Option("fp32", "--precision", help=_ONNX_PRECISION_HELP),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Calibration frames for fp16/int8: T4 scene(s) folder, split file or info .pkl."),
    category_mapping: str = typer.Option("j6gen2", "--category-mapping", help="Dataset categories -> model classes: j6gen2, nuscenes or identity."),
    calib_frames: Optional[int] = typer.Option(None, "--calib-frames",
                                               help="Calibration frames, spread over the dataset (default: 256)."),
    calib_method: str = typer.Option("max", "--calib-method",
                                     help="INT8 activation ranges: max, minmax, percentile, entropy or mse."),
    int8_snr_db: Optional[float] = typer.Option(None, "--int8-snr-db",
                                                help="INT8: layer groups leave INT8, most sensitive first, until every head "
                                                     "output's SNR vs fp32 is at least this (dB; the score over the whole "
                                                     "map, the box maps where fp32 detects; default: Int8Options')."),
    int8_exclude: list[str] = typer.Option([], "--int8-exclude", help="INT8: a layer group kept float (repeat), e.g. pts_voxel_encoder/pfn_layers.0."),
    int8_map_budget: Optional[float] = typer.Option(None, "--int8-map-budget", callback=bounded(0),
                                                    help="INT8: choose the plan by mAP instead of SNR: layer groups "
                                                         "leave INT8, the one whose removal gains most first, until "
                                                         "the mAP drop vs fp32 on annotated frames of --dataset that "
                                                         "the calibration did not use is at most this (e.g. 0.0025)."),
    int8_map_frames: int = typer.Option(64, "--int8-map-frames", callback=bounded(1),
                                        help="INT8 by mAP: frames of --dataset the calibration did not use (spread over them) the mAP is measured on."),
    metric: str = typer.Option("t4", "--metric", help="INT8 by mAP: metric preset (t4, nuscenes) or a metric .json."),
    int8_map_postprocess: str = typer.Option("mmdet3d", "--int8-map-postprocess",
                                             help="INT8 by mAP: the boxes judged: mmdet3d (decode + circle NMS, what "
                                                  "training reports) or autoware (the node's post-processing with its "
                                                  "default parameters, what the car outputs)."),
    tensorrt: bool = typer.Option(False, "--tensorrt", help="Also build TensorRT engines (needs TensorRT and a GPU)."),
    trt_precision: Optional[str] = typer.Option(None, "--trt-precision",
                                                help="TensorRT 10 builder flags for an fp32 graph: fp32, tf32 or fp16 (default: the ONNX's precision)."),
    workspace_gb: float = typer.Option(1.0, "--workspace-gb", callback=positive, help="TensorRT builder workspace in GiB."),
    device: str = typer.Option("auto", "--device", help=f"Where the model is traced and checked: {DEVICE_HELP}"),
    autoware_format: str = typer.Option("v4.1", "--autoware-format",
                                        help="Bundle layout: v4.1 or legacy (<model>_ml_package.param.yaml for "
                                             "nodes before bundle v4.1)."),
) -> None:
    """Export the two Autoware ONNX files, the Autoware param file and manifest.json, checked against PyTorch."""
    import dataclasses

    from centerpoint_deploy.export.precision.calibration import DEFAULT_CALIBRATION_FRAMES
    from centerpoint_deploy.export.precision.convert import Int8Options
    from centerpoint_deploy.export.tensorrt_build import precision_flags

    # every argument refused before any work
    if precision not in PRECISIONS:
        raise ExportError(f"--precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    if precision != "fp32" and dataset is None:
        raise ExportError(f"--precision {precision} needs --dataset: calibration frames from your data")
    if int8_map_budget is not None and precision != "int8":
        raise ExportError("--int8-map-budget applies to --precision int8 only")
    if int8_map_budget is not None and int8_snr_db is not None:
        raise ExportError("--int8-map-budget and --int8-snr-db choose the INT8 plan in two ways; pass one")
    from centerpoint_deploy.config.schema import MODES

    if int8_map_postprocess not in MODES:
        raise ExportError(f"--int8-map-postprocess '{int8_map_postprocess}' is not one of {', '.join(MODES)}")
    int8 = Int8Options(method=calib_method, exclude_groups=tuple(int8_exclude))
    if int8_snr_db is not None:
        int8 = dataclasses.replace(int8, snr_budget_db=int8_snr_db)
    if tensorrt and trt_precision is not None:
        precision_flags(trt_precision)
    from centerpoint_deploy.export.bundle import check_bundle_options, node_precision

    node_trt_precision = node_precision(trt_precision if trt_precision is not None else precision)
    check_bundle_options(autoware_format, node_trt_precision)
    prepare_dir(out)
    weights = resolve_checkpoint(checkpoint, config, random_weights, needed=True)
    target = resolve_device(device)

    import torch

    from centerpoint_deploy.config import load_config
    from centerpoint_deploy.export.onnx_export import SELF_CHECK_RTOL, export_onnx
    from centerpoint_deploy.model import build_model
    from centerpoint_deploy.terminal import plain_console, progress_bars

    model_config = load_config(config)
    console = plain_console()
    metric_config = None
    if int8_map_budget is not None:
        from centerpoint_deploy.job.inputs import job_metric_config

        metric_config = job_metric_config(metric, None, model_config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        model = build_model(model_config, checkpoint=weights, device=target)
    calibration = None
    if precision != "fp32":
        calibration, judged, judged_frames = _calibration(
            model, model_config, dataset, category_mapping,
            DEFAULT_CALIBRATION_FRAMES if calib_frames is None else calib_frames,
            int8_map_frames if int8_map_budget is not None else 0)
        if int8_map_budget is not None:
            from centerpoint_deploy.evaluate.plan_judge import MapJudge
            from centerpoint_deploy.export.precision.map_scan import MapBudget

            judge = MapJudge(model_config, judged_frames, metric_config, postprocess=int8_map_postprocess,
                             rot_y_axis_reference=rot_y_axis_reference)
            int8 = dataclasses.replace(int8, by_map=MapBudget(
                int8_map_budget, judged, judge,
                report=lambda step: console.print(f"  INT8 plan by mAP: float {list(step.excluded) or 'none'}: "
                                                  f"mAP {step.map:.4f}")))
    with folder_lock(out, "centerpoint-deploy export"):
        with progress_bars(console) as progress:
            result = export_onnx(model, model_config, out, opset=opset, rot_y_axis_reference=rot_y_axis_reference,
                                 simplify=simplify, atol=atol, rtol=SELF_CHECK_RTOL if rtol is None else rtol, checkpoint=weights, precision=precision,
                                 calibration=calibration, int8=int8, progress=progress,
                                 autoware_format=autoware_format, trt_precision=node_trt_precision)
        console.print(f"exported {model_config.name} from {weights or 'random weights'} to {out} on {target} "
                      f"({precision}, opset {opset}, rot_y_axis_reference={rot_y_axis_reference}, simplified={simplify})")
        for name, diff in result.max_abs_diff.items():
            console.print(f"  max |onnxruntime - pytorch| {name}: {diff:.3g}")
        for part in result.plan.parts:
            if precision == "int8":
                console.print(f"  {part.part}: {len(part.quantized_nodes)} of "
                              f"{len(part.quantized_nodes) + len(part.float_nodes)} weighted layers in INT8; "
                              f"kept float: {list(part.excluded_groups) or 'none'}")
            elif precision == "fp16":
                console.print(f"  {part.part}: kept fp32 (fp16 overflow on the calibration frames): "
                              f"{list(part.peaks) or 'none'}")
            if part.snr_db:
                console.print(f"  head output SNR vs fp32, {part.part} {precision} (dB): "
                              + ", ".join(f"{k} {v:.1f}" for k, v in part.snr_db.items()))
        if result.plan.map_drop is not None:
            console.print(f"  INT8 plan chosen by mAP on {len(result.plan.map_frames)} frames outside the calibration: fp32 "
                          f"{result.plan.baseline_map:.4f}, INT8 {result.plan.map_steps[-1].map:.4f} (drop "
                          f"{result.plan.map_drop:+.4f}, budget {result.plan.map_budget:g})")
        for part, problems in result.tensorrt_problems.items():
            for problem in problems:
                console.print(f"warning: {part} graph: TensorRT would refuse {problem}", style="yellow")
        if tensorrt:
            _build(out, trt_precision, workspace_gb, console)


def _calibration(model: Any, config: "ModelConfig", dataset: str, category_mapping: str, count: int,
                 judged: int = 0) -> tuple[Any, Any, list[Any]]:
    """Calibration inputs from ``count`` frames spread over ``dataset`` (checked before any compute).

    Returns:
        ``(calibration, judged set, judged frames)``: with ``judged > 0``, up to that many other
        frames of the dataset (spread over those left) to judge an INT8 plan by mAP on, with
        their graph inputs; else ``None`` and ``[]``.
    """
    from centerpoint_deploy.data import open_dataset
    from centerpoint_deploy.export.precision.calibration import (check_classes, check_frame_count,
                                                                   collect_calibration, pick_frames)

    frames = open_dataset(dataset, class_names=config.class_names, category_mapping=category_mapping,
                          sweeps_num=config.points.sweeps_num, load_dim=config.points.load_dim)
    check_frame_count(count, len(frames))
    picked = pick_frames(len(frames), count)
    chosen = [frames[i] for i in picked]
    check_classes(chosen, config.class_names)
    rest = [i for i in sorted(set(range(len(frames))) - set(picked)) if frames.records[i].gt is not None]
    if judged and not rest:
        left = len(frames) - len(picked)
        raise ExportError("--int8-map-budget judges the INT8 plan on annotated frames the calibration did not use, "
                          + (f"but --calib-frames {count} takes all {len(frames)} frames of the dataset: lower "
                             "--calib-frames or pass a larger dataset" if not left else
                             f"and none of the {left} frames left has annotations"))
    judged_frames = [frames[rest[i]] for i in pick_frames(len(rest), min(judged, len(rest)))] if judged else []
    model.eval()
    return (collect_calibration(model, config, chosen),
            collect_calibration(model, config, judged_frames) if judged_frames else None, judged_frames)


def build_engine(
    deploy_dir: Path = typer.Argument(..., help="Deploy directory written by 'export'."),
    precision: Optional[str] = typer.Option(None, "--precision", help=_PRECISION_HELP),
    workspace_gb: float = typer.Option(1.0, "--workspace-gb", callback=positive, help="TensorRT builder workspace in GiB."),
    min_voxels: int = typer.Option(1000, "--min-voxels", callback=bounded(1), help="Smallest voxel count of the encoder profile."),
    opt_voxels: Optional[int] = typer.Option(None, "--opt-voxels", callback=bounded(1),
                                             help="Voxel count to tune for (default max_voxels / 4)."),
    static_encoder: bool = typer.Option(False, "--static-encoder",
                                        help="Autoware's profile: min = opt = max = [max_voxels, 32, F]."),
    max_batch: int = typer.Option(1, "--max-batch", callback=bounded(1), help="Largest head batch."),
    timing_cache: Optional[Path] = typer.Option(None, "--timing-cache", help="Tactic timing cache file to reuse."),
) -> None:
    """Build TensorRT engines for both graphs of a deploy directory and list them in its manifest."""
    from centerpoint_deploy.export.manifest import load_manifest
    from centerpoint_deploy.export.tensorrt_build import derive_profiles, precision_flags
    from centerpoint_deploy.terminal import plain_console

    if precision is not None:
        precision_flags(precision)
    config = load_manifest(deploy_dir).model_config()
    prepare_dir(deploy_dir, "deploy directory")
    profiles = derive_profiles(config, min_voxels=min_voxels, opt_voxels=opt_voxels,
                               static_encoder=static_encoder, max_batch=max_batch)
    with folder_lock(deploy_dir, "centerpoint-deploy build-engine"):
        _build(deploy_dir, precision, workspace_gb, plain_console(), profiles, timing_cache)


def _build(deploy_dir: Path, precision: str | None, workspace_gb: float, console: "Console",
           profiles: dict | None = None, timing_cache: Path | None = None) -> None:
    from centerpoint_deploy.export.manifest import ENGINE_FILES
    from centerpoint_deploy.export.tensorrt_build import build_deploy_engines

    manifest = build_deploy_engines(deploy_dir, precision=precision,  # type: ignore[arg-type]
                                    workspace_bytes=int(workspace_gb * (1 << 30)),
                                    profiles=profiles, timing_cache=timing_cache)
    for part, record in manifest.engines.items():
        console.print(f"built {deploy_dir / ENGINE_FILES[part]} ({record.precision}, TensorRT "
                      f"{record.tensorrt_version}, profile {record.profile})")
