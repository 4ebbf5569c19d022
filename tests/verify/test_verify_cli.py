"""``centerpoint-deploy verify``: exit status, reports, bisection and argument errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from centerpoint_deploy.cli.app import app
from centerpoint_deploy.data.pointcloud import write_points_bin
from centerpoint_deploy.errors import BundleError, VerificationError
from centerpoint_deploy.export.manifest import sha256_file

from tests.verify.conftest import scaled_initializer_copy

runner = CliRunner()


@pytest.fixture(scope="module")
def point_file(tmp_path_factory: pytest.TempPathFactory, frames) -> Path:
    path = tmp_path_factory.mktemp("points") / "0.pcd.bin"
    write_points_bin(path, frames[0].numpy())
    return path


@pytest.fixture()
def broken_deploy_dir(tmp_path: Path, deploy_dir: Path) -> Path:
    """A consistent-looking export (manifest digests updated) whose head weights are wrong."""
    out = tmp_path / "broken"
    shutil.copytree(deploy_dir, out)
    head = out / "pts_backbone_neck_head.onnx"
    scaled_initializer_copy(head, head, "/pts_bbox_head/shared_conv/conv/Conv", 1.05)
    metadata = out / "deploy_metadata.yaml"
    data = yaml.safe_load(metadata.read_text())
    data["files"][head.name] = sha256_file(head)
    metadata.write_text(yaml.safe_dump(data))
    return out


def run(deploy: Path, checkpoint: Path, points: Path, out: Path, *extra: str):
    return runner.invoke(app, ["verify", "--deploy-dir", str(deploy), "--config", "tiny", "--checkpoint",
                               str(checkpoint), "--points", str(points), "--out", str(out), *extra])


def test_good_export_exits_zero_and_writes_reports(deploy_dir, checkpoint, point_file, tmp_path):
    result = run(deploy_dir, checkpoint, point_file, tmp_path / "out", "--tol", "heatmap=1e-4,1e-3")
    assert result.exit_code == 0, result.output
    assert "ALL PASSED" in result.output and "fp32 tolerances (default)" in result.output
    report = json.loads((tmp_path / "out" / "verification.json").read_text())
    assert report["passed"] is True
    assert report["tolerances"]["per_output"] == {"heatmap": {"atol": 1e-4, "rtol": 1e-3, "max_outlier_share": 0.0, "min_snr_db": None}}
    assert (tmp_path / "out" / "verification.md").read_text().startswith("# Verification: PASSED")
    assert (tmp_path / "out" / "bev_diff_onnxruntime.png").stat().st_size > 0


def test_broken_export_exits_one_and_bisects(broken_deploy_dir, checkpoint, point_file, tmp_path):
    result = run(broken_deploy_dir, checkpoint, point_file, tmp_path / "out", "--bisect")
    assert result.exit_code == 1, result.output
    assert "VERIFICATION FAILED" in result.output and "<- first divergence" in result.output
    markdown = (tmp_path / "out" / "verification.md").read_text()
    assert "first diverging layer is pts_bbox_head.shared_conv.conv" in markdown
    report = json.loads((tmp_path / "out" / "verification.json").read_text())
    assert report["backends"]["onnxruntime"]["bisections"][0]["first_failure"] == "pts_bbox_head.shared_conv.conv +BN"
    assert (tmp_path / "out" / "bisection_onnxruntime_head.png").stat().st_size > 0


def test_wrong_checkpoint_and_bad_arguments_are_user_errors(deploy_dir, checkpoint, point_file, tmp_path):
    other = tmp_path / "other.pth"
    other.write_bytes(checkpoint.read_bytes() + b"\0")
    result = run(deploy_dir, other, point_file, tmp_path / "out")
    assert isinstance(result.exception, VerificationError) and "exported from a checkpoint" in str(result.exception)
    result = run(deploy_dir, checkpoint, point_file, tmp_path / "out", "--backend", "pytorch")
    assert isinstance(result.exception, VerificationError) and "reference is PyTorch" in str(result.exception)
    result = run(deploy_dir, checkpoint, point_file, tmp_path / "out", "--tol", "heatmap")
    assert isinstance(result.exception, VerificationError) and "NAME=ATOL,RTOL" in str(result.exception)
    result = runner.invoke(app, ["verify", "--deploy-dir", str(deploy_dir), "--config", "tiny", "--checkpoint",
                                 str(checkpoint), "--out", str(tmp_path / "out")])
    assert isinstance(result.exception, VerificationError) and "--points" in str(result.exception)


@pytest.mark.parametrize("damage", ["edit", "delete"])
def test_param_yaml_missing_or_edited_fails(deploy_dir, checkpoint, point_file, tmp_path, damage):
    """#15.5: a deploy directory whose node parameter file was edited or removed is refused."""
    copy = shutil.copytree(deploy_dir, tmp_path / "copy")
    param = copy / "ml_package.param.yaml"
    if damage == "edit":
        param.write_text(param.read_text().replace("0.35", "0.5"))
    else:
        param.unlink()
    result = run(copy, checkpoint, point_file, tmp_path / "out")
    assert result.exit_code != 0 and isinstance(result.exception, BundleError)
    assert "ml_package.param.yaml" in str(result.exception)
    assert ("changed after export" if damage == "edit" else "is missing") in str(result.exception)
