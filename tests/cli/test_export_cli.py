"""``centerpoint-deploy export`` / ``build-engine``: arguments, the deploy directory, errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from centerpoint_deploy.cli.app import app
from centerpoint_deploy.config import load_config
from centerpoint_deploy.data.pointcloud import write_points_bin
from centerpoint_deploy.errors import BackendError, BackendUnavailableError, CenterPointError, ExportError
from centerpoint_deploy.export.manifest import load_manifest, sha256_file
from centerpoint_deploy.model import build_model, save_checkpoint

runner = CliRunner()


def test_export_random_weights_then_build_engine_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = runner.invoke(app, ["build-engine", str(tmp_path)])
    assert isinstance(result.exception, BackendError) and "is not a deploy directory" in str(result.exception)
    out = tmp_path / "deploy"
    result = runner.invoke(app, ["export", "--config", "tiny", "--random-weights", "--out", str(out),
                                 "--rot-y-axis-reference", "--opset", "16"])
    assert result.exit_code == 0, result.output
    assert "max |onnxruntime - pytorch| heatmap@B2" in result.output
    manifest = load_manifest(out)
    assert (manifest.opset, manifest.rot_y_axis_reference, manifest.checkpoint_sha256) == (16, True, None)
    assert sorted(p.name for p in out.iterdir()) == ["deploy_metadata.yaml", "detection_class_remapper.param.yaml",
                                                     "ml_package.param.yaml", "pts_backbone_neck_head.onnx",
                                                     "pts_voxel_encoder.onnx"]

    result = runner.invoke(app, ["build-engine", str(out), "--opt-voxels", "9000"])
    assert isinstance(result.exception, ExportError) and "opt_voxels = 9000" in str(result.exception)
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    result = runner.invoke(app, ["build-engine", str(out), "--precision", "fp32"])
    assert isinstance(result.exception, BackendUnavailableError)
    assert "TensorRT is not installed" in str(result.exception)


def test_export_checkpoint_then_detect_with_onnxruntime(tmp_path: Path) -> None:
    """The exported checkpoint gives the PyTorch run's boxes (rot convention undone)."""
    model = build_model(load_config("tiny"))
    for task_head in model.pts_bbox_head.task_heads:
        torch.nn.init.zeros_(task_head.heatmap[-1].bias)  # random weights that do emit boxes
    checkpoint = save_checkpoint(model, tmp_path / "tiny.pth", {})
    out = tmp_path / "deploy"
    result = runner.invoke(app, ["export", "-c", "tiny", "--checkpoint", str(checkpoint), "-o", str(out),
                                 "--rot-y-axis-reference"])
    assert result.exit_code == 0, result.output
    assert load_manifest(out).checkpoint_sha256 == sha256_file(checkpoint)

    rng = np.random.default_rng(0)
    cloud = tmp_path / "0.pcd.bin"
    write_points_bin(cloud, np.concatenate([rng.uniform(-12, 12, (800, 2)), rng.uniform(-2, 2, (800, 1)),
                                            rng.uniform(0, 255, (800, 1)), np.zeros((800, 1))], axis=1))
    torch_run = runner.invoke(app, ["detect", str(cloud), "-c", "tiny", "--checkpoint", str(checkpoint), "--format", "records"])
    ort_run = runner.invoke(app, ["detect", str(cloud), "-c", "tiny", "--backend", "onnxruntime", "--deploy-dir", str(out), "--format", "records"])
    assert torch_run.exit_code == 0 and ort_run.exit_code == 0, ort_run.output
    expected, got = json.loads(torch_run.stdout)[str(cloud)], json.loads(ort_run.stdout)[str(cloud)]
    assert expected and [r["label"] for r in got] == [r["label"] for r in expected]
    assert np.allclose([r["box"] for r in got], [r["box"] for r in expected], atol=1e-4)


@pytest.mark.parametrize(("extra", "message"), [
    ([], "no weights: pass --checkpoint PATH (or --random-weights"),
    (["--random-weights", "--checkpoint", "x.pth"], "either --checkpoint or --random-weights, not both"),
    (["--random-weights", "--tensorrt", "--trt-precision", "int8"], "precision 'int8' is not one of"),
    (["--random-weights", "--precision", "int4"], "--precision 'int4' is not one of"),
    (["--random-weights", "--precision", "int8"], "--precision int8 needs --dataset"),
])
def test_export_argument_errors(tmp_path: Path, extra: list[str], message: str) -> None:
    result = runner.invoke(app, ["export", "-c", "tiny", "--out", str(tmp_path), *extra])
    assert isinstance(result.exception, CenterPointError) and message in str(result.exception)
    assert not (tmp_path / "deploy_metadata.yaml").exists()


def test_reduced_precision_export_refuses_bad_calibration_input(tmp_path: Path) -> None:
    """Too few frames or more frames than the dataset holds: one error, nothing written."""
    from centerpoint_deploy.data.synthetic import LidarConfig, generate_dataset

    data = tmp_path / "data"
    generate_dataset(data, num_scenes=1, frames_per_scene=4, seed=2, sensor=LidarConfig(beams=16, columns=360))
    for count, message in (("2", "--calib-frames 2 is too few"), ("9", "more frames than the dataset holds (4)")):
        out = tmp_path / f"out{count}"
        result = runner.invoke(app, ["export", "-c", "tiny", "--random-weights", "--out", str(out), "--precision",
                                     "int8", "--dataset", str(data), "--calib-frames", count])
        assert isinstance(result.exception, ExportError) and message in str(result.exception)
        assert not out.exists()
