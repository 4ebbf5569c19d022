"""One variant spec, one parser, one builder, and the bugs that came from having several."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from centerpoint_deploy.benchmark import run as run_module
from centerpoint_deploy.cli import benchmark as benchmark_cli
from centerpoint_deploy.cli import verify as verify_cli
from centerpoint_deploy.cli.evaluate import _build_detectors
from centerpoint_deploy.config import load_config
from centerpoint_deploy.errors import BackendError
from centerpoint_deploy.export.manifest import EngineRecord
from centerpoint_deploy.static_pipeline import StaticPipeline, StaticSettings
from centerpoint_deploy.variant import VariantSpec, build_detector
from centerpoint_deploy.verify.tolerances import judged_precision, run_precision, tolerance_class


@pytest.fixture(scope="module")
def config():
    return load_config("tiny")


def test_one_grammar_with_canonical_names_and_checked_copies() -> None:
    spec = VariantSpec.parse("pytorch:bf16+static+fuse_batchnorm", device="cpu")
    assert spec == VariantSpec("pytorch", "bf16", ("fuse_batchnorm", "static"), "cpu")
    assert spec.name == "pytorch:bf16+fuse_batchnorm+static" and VariantSpec.parse(spec.name) == spec
    assert spec.static and not spec.pipeline_graph and spec.torch_flags == ("fuse_batchnorm",)
    copy = dataclasses.replace(spec, device="cuda:1")
    assert copy.flags == spec.flags and copy.device == "cuda:1"
    with pytest.raises(BackendError, match="onnxruntime flags .'fuse_batchnorm', 'static'. must be distinct"):
        dataclasses.replace(spec, backend="onnxruntime", precision="fp32")
    assert VariantSpec.parse("tensorrt").precision == "engine"  # whatever the engines were built with
    assert VariantSpec.parse("pytorch") == VariantSpec("pytorch", "fp32")


@pytest.mark.parametrize("old, new", [
    ("pytorch-fp16", "pytorch:fp16+channels_last+fuse_batchnorm"),
    ("pytorch-bf16", "pytorch:bf16+channels_last+fuse_batchnorm"),
    ("pytorch-tf32", "pytorch:tf32"),
])
def test_old_short_names_are_read_with_a_note(old: str, new: str) -> None:
    with pytest.warns(FutureWarning, match=f"'{old}' is deprecated; write '{new.replace('+', '[+]')}'"):
        assert VariantSpec.parse(old) == VariantSpec.parse(new)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        VariantSpec.parse("onnxruntime")  # plain names are the grammar, not deprecated


def test_build_detector_builds_what_the_spec_names(config) -> None:
    detector = build_detector(VariantSpec.parse("pytorch:bf16+fuse_batchnorm+static"), config, max_points=1234)
    assert isinstance(detector, StaticPipeline) and detector.settings == StaticSettings(max_points=1234)
    assert detector.head.options.precision == "bf16" and detector.head.options.fuse_batchnorm
    with pytest.raises(BackendError, match="pipeline_graph needs a CUDA device"):
        build_detector(VariantSpec.parse("pytorch:fp32+pipeline_graph"), config)
    with pytest.raises(BackendError, match="runs a checkpoint; deploy_dir is for"):
        build_detector(VariantSpec.parse("pytorch"), config, deploy_dir="deploy")


def test_evaluate_knows_its_own_pytorch_variants(config) -> None:
    """``evaluate -b pytorch-bf16 --random-weights`` used to answer that no pytorch backend was requested."""
    with pytest.warns(FutureWarning):
        detectors, fingerprints, _ = _build_detectors(["pytorch-bf16"], config, "tiny", None, None,
                                                      torch.device("cpu"), True)
    assert detectors["pytorch-bf16"].head.options.precision == "bf16"
    assert fingerprints == {"pytorch-bf16": "random-seed-0"}


def _manifest(*precisions: str) -> SimpleNamespace:
    """What the tolerance decision reads of a manifest: its engine records."""
    engines = {part: EngineRecord(file=f"{part}.engine", sha256="0" * 64, precision=precision, tensorrt_version="10",
                                  profile={}) for part, precision in zip(("encoder", "head"), precisions)}
    return SimpleNamespace(engines=engines, precision="fp32")  # an fp32 ONNX export


@pytest.mark.parametrize("built, expected", [
    (("fp32", "fp32"), "fp32"), (("fp16", "fp16"), "fp16"), (("bf16", "bf16"), "bf16"), (("int8", "int8"), "int8"),
    (("fp32", "fp16"), "fp16"), ((), "fp32"),
])
def test_verify_and_deploy_judge_a_deploy_directory_alike(built: tuple[str, ...], expected: str) -> None:
    """``verify`` judged only fp16 engines loosely, ``deploy`` every reduced precision: now one decision."""
    manifest = _manifest(*built)
    spec = VariantSpec.parse("tensorrt")
    assert judged_precision([spec], manifest) == expected
    assert verify_cli._precision(None, [spec], manifest)[0] == expected  # the CLI asks the same function
    assert judged_precision([VariantSpec.parse("onnxruntime"), spec], manifest) == expected
    assert run_precision(VariantSpec.parse("tensorrt:fp16"), manifest) == "fp16"
    assert tolerance_class("tf32") == "fp16" and tolerance_class("fp32") == "fp32"
    assert tolerance_class("bf16") == "bf16"  # 8 significand bits: a class of its own, between fp16 and int8
    assert judged_precision([VariantSpec.parse("pytorch:fp16"), VariantSpec.parse("pytorch:bf16")], None) == "bf16"
    int8_export = SimpleNamespace(engines={}, precision="int8")
    assert judged_precision([VariantSpec.parse("onnxruntime"), spec], int8_export) == "int8"


def test_benchmark_reads_a_point_file_as_every_command_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A T4 file's fifth column is the ring index: the benchmark used to feed it to the model as the time lag."""
    raw = np.zeros((500, 5), dtype=np.float32)
    raw[:, :3] = np.random.default_rng(0).uniform(-10, 10, (500, 3))
    raw[:, 4] = 7.0  # ring index
    point_file = tmp_path / "frame.pcd.bin"
    raw.tofile(point_file)
    seen = {}

    def capture(config, variants, points, **kwargs):
        seen["points"] = points
        raise SystemExit(0)

    monkeypatch.setattr(run_module, "benchmark_variants", capture)  # the command imports it when it runs
    with pytest.raises(SystemExit):
        benchmark_cli.benchmark(config="tiny", variant=["pytorch:fp32"], checkpoint=None, deploy_dir=None,
                                device="cpu", points=point_file, sweeps=1, seed=0, warmup=0, iterations=1,
                                scaling=False, scaling_points=[], scaling_sweeps=[], scaling_grid=[],
                                scaling_variant=[], scaling_iterations=1, threads=None, out=None, no_plots=True)
    assert seen["points"].shape == (500, 5) and bool((seen["points"][:, 4] == 0).all())


def test_grid_scaling_rows_time_the_variant_they_name(config, monkeypatch: pytest.MonkeyPatch) -> None:
    """The grid rows rebuilt the detector without graph/compile/max_points: another path was timed."""
    detector = build_detector(VariantSpec.parse("pytorch:fp32+static"), config, max_points=4321, nms_rounds=5)
    timed = []
    original = StaticPipeline.__call__

    def spy(self, points):
        timed.append(self)
        return original(self, points)

    monkeypatch.setattr(StaticPipeline, "__call__", spy)
    points = run_module.scale("v", detector.load(), "grid", [32], warmup=0, iterations=1, points_per_frame=300)
    assert [p.value for p in points] == [32]
    grid_runs = [d for d in timed if d.config.bev_shape == (32, 32)]
    assert grid_runs and all(d.settings == StaticSettings(nms_rounds=5, max_points=4321) for d in grid_runs)
    assert {id(d.encoder) for d in grid_runs} == {id(detector.encoder)}


def test_one_construction_site(config) -> None:
    """Only the variant builder calls a backend-pair constructor (the structure scan of issue 14)."""
    import ast

    package = Path(__file__).resolve().parents[1] / "centerpoint_deploy"
    builders = {"Detector", "StaticPipeline", "TorchEncoderBackend", "TorchHeadBackend", "OnnxRuntimeBackend", "TensorRTBackend"}
    sites = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in builders:
                sites.add(path.relative_to(package).as_posix())
    assert sites <= {"variant.py", "detector.py", "static_pipeline.py", "export/onnx_export.py"}, sites


def test_onnxruntime_channels_last_is_the_cuda_providers_nhwc_option(tmp_path) -> None:
    from centerpoint_deploy.backends.onnxruntime import OnnxRuntimeBackend

    spec = VariantSpec.parse("onnxruntime:fp16+static+channels_last", device="cuda")
    assert spec.flags == ("channels_last", "static") and spec.name == "onnxruntime:fp16+channels_last+static"
    with pytest.raises(BackendError, match="prefer_nhwc is an option of ONNX Runtime's CUDA provider"):
        OnnxRuntimeBackend(tmp_path / "head.onnx", "cpu", prefer_nhwc=True)
