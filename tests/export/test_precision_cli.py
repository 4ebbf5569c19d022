"""``export --precision int8`` on bad input: one ``error:`` line, exit status 1, no bundle written."""

from __future__ import annotations

from pathlib import Path

import pytest

from centerpoint_deploy.cli.app import run


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from centerpoint_deploy.data.synthetic import LidarConfig, generate_dataset

    root = tmp_path_factory.mktemp("data")
    generate_dataset(root, num_scenes=1, frames_per_scene=4, seed=2, sensor=LidarConfig(beams=16, columns=360))
    return root


@pytest.mark.parametrize("extra, message", [
    (["--calib-frames", "2"], "--calib-frames 2 is too few"),
    (["--calib-frames", "4", "--category-mapping", "identity"], "the dataset's classes do not match the model"),
    (["--calib-frames", "4", "--calib-method", "kl"], "calibration method 'kl' is not one of"),
    (["--calib-frames", "4", "--int8-exclude", "pts_backbone/blocks.9"], "layer group(s) ['pts_backbone/blocks.9'] do not exist"),
    (["--calib-frames", "4", "--int8-map-budget", "0.0025"], "takes all 4 frames of the dataset"),
    (["--calib-frames", "4", "--int8-map-budget", "-1"], "--int8-map-budget"),
    (["--calib-frames", "4", "--int8-map-budget", "0.01", "--int8-snr-db", "20"], "choose the INT8 plan in two ways"),
    (["--calib-frames", "4", "--int8-map-budget", "0.01", "--metric", "kitti"], "metric must be one of"),
    (["--calib-frames", "4", "--int8-map-budget", "0.01", "--int8-map-postprocess", "node"],
     "--int8-map-postprocess 'node' is not one of mmdet3d, autoware"),
])
def test_bad_int8_input_is_one_error_line(scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture, extra, message) -> None:
    out = tmp_path / "out"
    status = run(["export", "-c", "tiny", "--random-weights", "--out", str(out), "--precision", "int8",
                  "--dataset", str(scene), *extra])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert status == 1 and len(errors) == 1 and message in errors[0], errors
    assert not (out / "deploy_metadata.yaml").exists() and not (out / "pts_voxel_encoder.onnx").exists()


def test_a_map_budget_for_another_precision_is_one_error_line(scene: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    status = run(["export", "-c", "tiny", "--random-weights", "--out", str(tmp_path / "out"), "--precision", "fp16",
                  "--dataset", str(scene), "--int8-map-budget", "0.01"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert status == 1 and errors == ["error: --int8-map-budget applies to --precision int8 only"]
