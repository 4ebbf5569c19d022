"""Variant strings, the benchmark runner on the tiny model, reports and their JSON round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from centerpoint_deploy.benchmark.inputs import lidar_frame, model_columns, random_cloud
from centerpoint_deploy.benchmark.render import stage_names, to_markdown
from centerpoint_deploy.benchmark.results import BenchmarkReport
from centerpoint_deploy.benchmark import run as run_module
from centerpoint_deploy.benchmark.captured import time_captured_stages
from centerpoint_deploy.benchmark.run import ScalingPlan, benchmark_variants, scaling_config
from centerpoint_deploy.errors import BenchmarkError
from centerpoint_deploy.config import load_config
from centerpoint_deploy.stages import STAGES
from centerpoint_deploy.errors import BackendError
from centerpoint_deploy.variant import VariantSpec, build_detector


@pytest.fixture(scope="module")
def config():
    return load_config("tiny")


def test_variant_strings_parse_to_a_canonical_name() -> None:
    spec = VariantSpec.parse("pytorch:fp16+static+cuda_graph+channels_last")
    assert (spec.backend, spec.precision, spec.static, spec.flags) == ("pytorch", "fp16", True,
                                                                       ("channels_last", "cuda_graph", "static"))
    assert spec.name == "pytorch:fp16+channels_last+cuda_graph+static"
    assert VariantSpec.parse("onnxruntime").name == "onnxruntime:fp32"
    graph = VariantSpec.parse("pytorch:fp16+pipeline_graph+fuse_relu+fuse_batchnorm")
    assert graph.static and graph.pipeline_graph and graph.flags == ("fuse_batchnorm", "fuse_relu", "pipeline_graph")
    assert graph.name == "pytorch:fp16+fuse_batchnorm+fuse_relu+pipeline_graph"
    assert VariantSpec.parse(graph.name + "+static") == graph
    assert VariantSpec.parse("onnxruntime:fp32+cudnn_benchmark").flags == ("cudnn_benchmark",)


@pytest.mark.parametrize("text, message", [
    ("jax:fp32", "unknown backend 'jax'; supported:"),
    ("onnxruntime:bf16", "precision 'bf16' is not one of fp32, tf32, fp16, int8 for onnxruntime"),
    ("onnxruntime:fp32+cuda_graph", "must be distinct, from channels_last, cudnn_benchmark, static"),
    ("tensorrt:fp16+cudnn_benchmark", "must be distinct, from static$"),
    ("pytorch:fp32+static+static", "must be distinct"),
])
def test_bad_variant_strings_say_what_is_allowed(text: str, message: str) -> None:
    with pytest.raises(BackendError, match=message):
        VariantSpec.parse(text)


def test_inputs_have_the_model_columns(config) -> None:
    cloud = random_cloud(1000, config, seed=3)
    assert cloud.shape == (1000, 5) and cloud.dtype.name == "float32"
    assert (cloud[:, 0] >= -12.8).all() and (cloud[:, 0] < 12.8).all() and (cloud[:, 4] < 0.1).all()
    with pytest.raises(BenchmarkError, match="num_points = 0"):
        random_cloud(0, config)
    with pytest.raises(BenchmarkError, match="lack the columns"):
        model_columns(cloud[:, :3], config)


def test_scaling_config_keeps_voxel_size_and_checks_the_multiple(config) -> None:
    scaled = scaling_config(config, 128)
    assert scaled.bev_shape == (128, 128) and scaled.voxelization.voxel_size == config.voxelization.voxel_size
    with pytest.raises(BenchmarkError, match="multiple of 4"):
        scaling_config(config, 30)


def test_benchmark_variants_measures_skips_scales_and_writes(config, tmp_path: Path) -> None:
    points = torch.from_numpy(random_cloud(3000, config, seed=1))
    point_file = tmp_path / "frame.bin"
    points.numpy().tofile(point_file)
    plan = ScalingPlan(points=(500, 2000), sweeps=(), grid=(32,), iterations=1, warmup=0)
    report = benchmark_variants(config, ["pytorch:fp32", "pytorch:fp32+static", "onnxruntime:fp32"], points,
                                device=torch.device("cpu"), warmup=1, iterations=2, point_file=point_file,
                                scaling=plan, out_dir=tmp_path / "out", plots=False)
    assert [r.name for r in report.results] == ["pytorch:fp32", "pytorch:fp32+static"]
    assert "needs deploy_dir (--deploy-dir" in report.skipped["onnxruntime:fp32"]
    first = report.results[0]
    assert list(first.stages) == ["read", *STAGES, "sum of stages"]
    assert all(s.count == 2 for s in first.stages.values()) and first.end_to_end.count == 2
    assert first.options == {"channels_last": False, "fuse_batchnorm": False, "fuse_relu": False, "fuse_heads": False, "fuse_neck": False,
                             "cudnn_benchmark": False, "cuda_graph": False, "compile": False, "max_autotune": False,
                             "static_shapes": False, "pipeline_graph": False}
    assert report.results[1].num_voxels == first.num_voxels > 0  # padding not counted
    assert report.results[1].num_boxes == first.num_boxes
    assert [(p.axis, p.value) for p in report.scaling if p.variant == first.name] == [
        ("points", 500), ("points", 2000), ("grid", 32)]
    saved = json.loads((tmp_path / "out" / "benchmark.json").read_text())
    assert BenchmarkReport.from_dict(saved).to_dict() == report.to_dict()
    markdown = (tmp_path / "out" / "benchmark.md").read_text()
    assert markdown == to_markdown(report)
    assert "| pytorch:fp32 | pytorch | fp32 | - |" in markdown
    assert "- onnxruntime:fp32: the onnxruntime backend needs deploy_dir (--deploy-dir" in markdown
    assert stage_names(report) == ["read", *STAGES]


def test_benchmark_cli_writes_reports(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from centerpoint_deploy.cli.app import app

    result = CliRunner().invoke(app, ["benchmark", "-c", "tiny", "-n", "1", "--warmup", "0", "-v", "pytorch:fp32",
                                      "--sweeps", "1", "--no-plots", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "benchmark.json").read_text())
    assert report["frame"]["source"].startswith("synthetic 64-beam LiDAR") and report["frame"]["num_points"] > 50_000
    assert report["results"][0]["stages"]["read"]["count"] == 1


def test_synthetic_frame_merges_sweeps_with_time_lags() -> None:
    frame = lidar_frame(seed=0, sweeps=2)
    lags = sorted(set(frame[:, 4].round(3).tolist()))
    assert lags == pytest.approx([0.0, 0.1]) and frame.shape[1] == 5


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_graph_variants_time_each_captured_stage(config, monkeypatch: pytest.MonkeyPatch) -> None:
    points = torch.from_numpy(random_cloud(3000, config, seed=1))
    spec = VariantSpec.parse("pytorch:fp32+pipeline_graph", device="cuda")
    detector = build_detector(spec, config).load()
    samples = time_captured_stages(detector, points, warmup=1, iterations=3)
    assert list(samples) == list(STAGES) and all(len(s) == 3 and min(s) > 0 for s in samples.values())

    calls = []

    def spy(*args, **kwargs):
        calls.append(args[0])
        return time_captured_stages(*args, **kwargs)

    monkeypatch.setattr(run_module, "time_captured_stages", spy)
    report = benchmark_variants(config, [spec.name, "pytorch:fp32+static"], points, device=torch.device("cuda"),
                                warmup=1, iterations=3)
    assert [d.settings.graph for d in calls] == [True]  # the graph variant only; the static one runs staged
    assert [list(r.stages) for r in report.results] == [[*STAGES, "sum of stages"]] * 2


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_graph_variant_on_a_cloud_over_max_points_times_the_uncaptured_path(config) -> None:
    """A 10-sweep cloud over ``max_points`` runs uncaptured; its stage timing used to load it into a graph buffer and crash."""
    points = torch.from_numpy(random_cloud(3000, config, seed=1))
    spec = VariantSpec.parse("pytorch:fp32+pipeline_graph", device="cuda")
    detector = build_detector(spec, config, max_points=1000)
    with pytest.warns(UserWarning, match="exceed the CUDA graph's max_points=1000"):
        result = run_module.benchmark_detector(spec.name, spec, detector, points, warmup=1, iterations=2)
    assert list(result.stages) == [*STAGES, "sum of stages"]


def test_on_the_cpu_one_staged_run_gives_the_end_to_end_figure(config, tmp_path: Path) -> None:
    """No second run on the CPU: each iteration's end to end is its stages' total, and the detector
    runs the first call, the staged warm-up and iterations only; with a point file (a read stage
    the end-to-end run does not have) the end-to-end run is separate."""
    points = torch.from_numpy(random_cloud(2000, config, seed=2))
    detector = build_detector(VariantSpec.parse("pytorch:fp32"), config)
    calls = []
    original = detector.run_stages
    detector.run_stages = lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs)
    result = run_module.benchmark_detector("cpu", VariantSpec.parse("pytorch:fp32"), detector, points, warmup=2,
                                           iterations=3)
    assert len(calls) == 1 + 1 + 3 + 1  # first call, warm-up, iterations, the final run for the sizes
    assert result.end_to_end.count == 3
    assert result.end_to_end.p50 == pytest.approx(result.stages["sum of stages"].p50)
    assert result.end_to_end.max == pytest.approx(result.stages["sum of stages"].max)
    calls.clear()
    point_file = tmp_path / "frame.bin"
    points.numpy().tofile(point_file)
    run_module.benchmark_detector("cpu", VariantSpec.parse("pytorch:fp32"), detector, points, warmup=2, iterations=3,
                                  point_file=point_file, load_dim=5)
    assert len(calls) == 1 + 1 + 3 + (2 + 3) + 1
