"""``centerpoint-deploy deploy``: the main job (export, verify, evaluate, benchmark, one report).

With no arguments it deploys the bundled demo model on the generated sample validation set.
Settings come from defaults < ``--deploy-config FILE`` < the flags below. Exit status 1 when
the verification fails (after the report is written).

Python equivalent::

    settings = load_settings("configs/deploy/demo.yaml", {"verify.frames": 5})
    result = run_deploy_job(settings)
    print(result.summary(), result.files["html"])
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Optional

import typer

from centerpoint_deploy.cli.common import CLASS_RANGE_HELP, CONFIG_HELP, DEVICE_HELP, METRIC_HELP
from centerpoint_deploy.job.settings import AUTOWARE_FORMATS, TENSORRT_PRECISIONS, load_settings
from centerpoint_deploy.outputs import folder_lock, prepare_dir


def deploy(
    deploy_config: Optional[Path] = typer.Option(None, "--deploy-config", help="Deploy settings YAML (see configs/deploy/demo.yaml)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="mmdet3d/AWML checkpoint (default: the bundled demo model)."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help=f"{CONFIG_HELP} (default: demo)"),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="T4 scene(s), split file or info .pkl (default: the generated sample set)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: outputs/deploy-<timestamp>)."),
    device: Optional[str] = typer.Option(None, "--device", help=f"{DEVICE_HELP} (default: auto)"),
    opset: Optional[int] = typer.Option(None, "--opset", help="ONNX opset, 13-17 (default: 17)."),
    rot_y_axis_reference: Optional[bool] = typer.Option(None, "--rot-y-axis-reference/--no-rot-y-axis-reference",
                                                        help="Export the head in Autoware's dim/rot convention."),
    simplify: Optional[bool] = typer.Option(None, "--simplify/--no-simplify", help="Run onnxsim on both graphs."),
    autoware_format: Optional[str] = typer.Option(None, "--autoware-format",
                                                  help=f"Bundle layout: {' or '.join(AUTOWARE_FORMATS)} (default: v4.1; "
                                                       "legacy for nodes before bundle v4.1)."),
    tensorrt: Optional[bool] = typer.Option(None, "--tensorrt/--no-tensorrt",
                                            help="Build TensorRT engines (default: when TensorRT and CUDA are available)."),
    precision: Optional[str] = typer.Option(None, "--precision", help=f"TensorRT precision: {', '.join(TENSORRT_PRECISIONS)} (default: fp16)."),
    verify: Optional[bool] = typer.Option(None, "--verify/--no-verify", help="Verify the exported backends against PyTorch."),
    verify_frames: Optional[int] = typer.Option(None, "--verify-frames", help="Frames verified, spread over the evaluated ones (default: 3)."),
    atol: Optional[float] = typer.Option(None, "--atol", help="Verification absolute tolerance (default: by precision)."),
    rtol: Optional[float] = typer.Option(None, "--rtol", help="Verification relative tolerance (default: by precision)."),
    bisect: Optional[bool] = typer.Option(None, "--bisect/--no-bisect", help="On a verification failure, find the first diverging layer."),
    evaluate: Optional[bool] = typer.Option(None, "--evaluate/--no-evaluate", help="Evaluate every backend on the dataset."),
    metric: Optional[str] = typer.Option(None, "--metric", help=f"{METRIC_HELP} (default: t4)"),
    class_range: Optional[float] = typer.Option(None, "--class-range", help=CLASS_RANGE_HELP),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Frames evaluated, spread evenly over the dataset (first and last included; default: 20)."),
    bev_frames: Optional[int] = typer.Option(None, "--bev-frames", help="Frames drawn as bird's-eye views, spread over the evaluated ones (default: 3)."),
    calibrate: Optional[bool] = typer.Option(None, "--calibrate/--no-calibrate",
                                             help="Calibrate the bundle's score thresholds on the evaluated frames "
                                                  "(written when they gain F1 on the held-out part)."),
    benchmark: Optional[bool] = typer.Option(None, "--benchmark/--no-benchmark", help="Measure per-stage latency of every backend."),
    iterations: Optional[int] = typer.Option(None, "--iterations", help="Timed benchmark runs per backend (default: 5)."),
    warmup: Optional[int] = typer.Option(None, "--warmup", help="Untimed benchmark runs first (default: 1)."),
) -> None:
    """Deploy a CenterPoint model: export the bundle (+ TensorRT), verify, evaluate, calibrate thresholds, benchmark, report."""
    settings = load_settings(deploy_config, {
        "checkpoint": checkpoint, "config": config, "dataset": dataset, "out": out, "device": device,
        "export.opset": opset, "export.rot_y_axis_reference": rot_y_axis_reference, "export.simplify": simplify,
        "export.autoware_format": autoware_format, "calibrate.enabled": calibrate,
        "export.tensorrt": tensorrt, "export.tensorrt_precision": precision,
        "verify.enabled": verify, "verify.frames": verify_frames, "verify.atol": atol, "verify.rtol": rtol,
        "verify.bisect": bisect,
        "evaluate.enabled": evaluate, "evaluate.metric": metric, "evaluate.class_range": class_range,
        "evaluate.max_frames": max_frames, "evaluate.bev_frames": bev_frames,
        "benchmark.enabled": benchmark, "benchmark.iterations": iterations, "benchmark.warmup": warmup,
    })

    from rich.console import Console

    from centerpoint_deploy.evaluate.distributed import rank_group
    from centerpoint_deploy.job.inputs import job_out_dir
    from centerpoint_deploy.job.run import run_deploy_job

    settings = dataclasses.replace(settings, out=prepare_dir(job_out_dir(settings.out)))
    with rank_group() as group:     # under torchrun: rank 0 runs the job, every rank evaluates its share
        with folder_lock(settings.out, "centerpoint-deploy deploy") if group.is_main else contextlib.nullcontext():
            result = run_deploy_job(settings, Console(stderr=True, width=max(Console().width, 150)), group)
    if result is not None and not result.passed:
        raise typer.Exit(1)
