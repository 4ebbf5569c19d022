"""``centerpoint-deploy config show / presets``."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from centerpoint_deploy.cli.app import app
from centerpoint_deploy.config import load_config

AWML = Path(__file__).parent / "fixtures/projects/CenterPoint/configs/t4dataset/Centerpoint/second_secfpn_8xb16_121m_j6gen2_base_amp.py"


def test_show_converts_awml_to_yaml(tmp_path: Path) -> None:
    out = tmp_path / "amp.yaml"
    result = CliRunner().invoke(app, ["config", "show", str(AWML), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "head maps (510, 510)" in result.output
    assert "upsample_strides:\n  - 0.5" in result.output
    assert load_config(out) == load_config(AWML)


def test_presets_and_bad_spec() -> None:
    result = CliRunner().invoke(app, ["config", "presets"])
    assert result.exit_code == 0 and "j6gen2_base_amp" in result.output.split()
    result = CliRunner().invoke(app, ["config", "show", "nope"])
    assert result.exit_code != 0
