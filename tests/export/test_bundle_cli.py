"""``centerpoint-deploy bundle check DIR``: ok line, or one error line naming the file and the key, exit 1."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from centerpoint_deploy.cli.app import app, main
from centerpoint_deploy.errors import BundleError
from centerpoint_deploy.export.onnx_export import ExportResult

runner = CliRunner()


@pytest.fixture()
def exported(plain_export: ExportResult) -> Path:
    return plain_export.manifest.deploy_dir


def test_check_a_good_bundle(exported: Path) -> None:
    result = runner.invoke(app, ["bundle", "check", str(exported)])
    assert result.exit_code == 0, result.output
    assert "is a v4.1 bundle of 'tiny'" in result.output and "fp32 ONNX, trt_precision fp32" in result.output
    assert "every sha256 matches" in result.output


def _broken_copy(exported: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(exported, tmp_path / "copy"))


def test_check_names_the_file_and_the_key(exported: Path, tmp_path: Path) -> None:
    bundle = _broken_copy(exported, tmp_path)
    path = bundle / "ml_package.param.yaml"
    document = yaml.safe_load(path.read_text())
    document["/**"]["ros__parameters"]["version"] = "v4.0"
    path.write_text(yaml.safe_dump(document))
    result = runner.invoke(app, ["bundle", "check", str(bundle)])
    assert isinstance(result.exception, BundleError)
    assert str(result.exception) == (f"{path}: 'version' = 'v4.0': the node reads bundle versions v4.1 or later "
                                     "within major 4")


def test_check_without_metadata_and_a_missing_dir(exported: Path, tmp_path: Path) -> None:
    bundle = _broken_copy(exported, tmp_path)
    (bundle / "deploy_metadata.yaml").unlink()
    result = runner.invoke(app, ["bundle", "check", str(bundle)])
    assert isinstance(result.exception, BundleError) and "deploy_metadata.yaml is missing" in str(result.exception)
    result = runner.invoke(app, ["bundle", "check", str(tmp_path / "nowhere")])
    assert isinstance(result.exception, BundleError) and "is not a directory" in str(result.exception)


def test_one_error_line_and_exit_1(exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    bundle = _broken_copy(exported, tmp_path)
    (bundle / "detection_class_remapper.param.yaml").write_text("/**:\n  ros__parameters:\n    allow_remapping_by_area_matrix: [1]\n"
                                                                "    min_area_matrix: [0.0]\n    max_area_matrix: [1.0]\n")
    monkeypatch.setattr(sys, "argv", ["centerpoint-deploy", "bundle", "check", str(bundle)])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "detection_class_remapper.param.yaml: 'allow_remapping_by_area_matrix[0]' remaps UNKNOWN -> UNKNOWN" in lines[0]
