"""Deploy settings: defaults, YAML, command-line overrides and errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from centerpoint_deploy.errors import ConfigError
from centerpoint_deploy.job.settings import DeploySettings, load_settings

REPO = Path(__file__).resolve().parents[2]


def test_defaults() -> None:
    settings = load_settings()
    assert settings == DeploySettings()
    assert (settings.config, settings.checkpoint, settings.dataset, settings.device) == ("demo", None, None, "auto")
    assert (settings.verify.frames, settings.evaluate.max_frames, settings.benchmark.iterations) == (3, 20, 5)


def test_example_deploy_config_spells_out_the_defaults() -> None:
    assert load_settings(REPO / "configs" / "deploy" / "demo.yaml") == DeploySettings()


def test_yaml_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text("config: tiny\ncheckpoint: a.pth\nexport: {opset: 13, rot_y_axis_reference: true}\n"
                    "verify: {frames: 5, atol: 0.5}\nevaluate: {metric: nuscenes}\n")
    settings = load_settings(path, {"verify.frames": 2, "export.opset": None, "evaluate.class_range": 30,
                                    "benchmark.enabled": False, "out": "x/y"})
    assert settings.config == "tiny" and settings.checkpoint == Path("a.pth")      # YAML
    assert settings.export.opset == 13 and settings.export.rot_y_axis_reference    # YAML (None override ignored)
    assert settings.verify.frames == 2                                             # flag beats YAML
    assert settings.verify.atol == 0.5 and settings.evaluate.metric == "nuscenes"  # YAML
    assert settings.evaluate.class_range == 30.0 and settings.out == Path("x/y")   # flags
    assert settings.benchmark.enabled is False and settings.benchmark.iterations == 5  # flag, default


def test_round_trip_through_dict() -> None:
    settings = load_settings(None, {"checkpoint": "c.pth", "evaluate.max_frames": 7, "export.tensorrt": False})
    assert DeploySettings.from_dict(settings.to_dict()) == settings
    assert settings.to_dict()["checkpoint"] == "c.pth"


@pytest.mark.parametrize(("overrides", "field", "allowed"), [
    ({"verify.frames": 0}, "'verify.frames' = 0", "an integer >= 1"),
    ({"verify.frames": "3"}, "'verify.frames' = '3'", "integer"),
    ({"verify.rtol": -1.0}, "'verify.rtol' = -1.0", ">= 0"),
    ({"export.opset": 18}, "'export.opset' = 18", "13..17"),
    ({"export.tensorrt_precision": "int8"}, "'export.tensorrt_precision' = 'int8'", "fp32, tf32, fp16"),
    ({"export.simplify": "yes"}, "'export.simplify' = 'yes'", "boolean"),
    ({"evaluate.metric": "kitti"}, "'evaluate.metric' = 'kitti'", "t4, nuscenes"),
    ({"evaluate.class_range": 0}, "'evaluate.class_range' = 0.0", "metres > 0"),
    ({"evaluate.bev_frames": -1}, "'evaluate.bev_frames' = -1", ">= 0"),
    ({"benchmark.iterations": 0}, "'benchmark.iterations' = 0", ">= 1"),
    ({"benchmark.warmup": 1.5}, "'benchmark.warmup' = 1.5", "integer"),
    ({"device": "tpu"}, "'device' = 'tpu'", "auto, cpu, cuda or cuda:N"),
])
def test_bad_values_name_the_field(overrides: dict, field: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, overrides)
    assert field in str(info.value) and allowed in str(info.value)


def test_bad_yaml_names_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text("verify:\n  frames: -2\n")
    with pytest.raises(ConfigError, match=r"deploy\.yaml: .*'verify\.frames' = -2"):
        load_settings(path)
    path.write_text("verify:\n  frame: 2\n")
    with pytest.raises(ConfigError, match=r"section 'verify' has unknown keys \['frame'\]; allowed: enabled, frames"):
        load_settings(path)
    path.write_text("evaluation: {}\n")
    with pytest.raises(ConfigError, match=r"unknown keys \['evaluation'\]"):
        load_settings(path)
    path.write_text("evaluate: 3\n")
    with pytest.raises(ConfigError, match="'evaluate' = 3 is invalid: a mapping"):
        load_settings(path)
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping of settings, got list"):
        load_settings(path)
    path.write_text("verify: {frames: [1\n")
    with pytest.raises(ConfigError, match="cannot read deploy config"):
        load_settings(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.yaml")
