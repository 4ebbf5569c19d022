"""load_config / save_config: presets, project YAML round trips, bad specs."""

from __future__ import annotations

from pathlib import Path

import pytest

from centerpoint_deploy.config import ModelConfig, list_presets, load_config, save_config
from centerpoint_deploy.errors import ConfigError


def test_presets_are_listed_and_load() -> None:
    assert {"tiny", "demo", "j6gen2_base", "j6gen2_base_amp"} <= set(list_presets())
    for name in list_presets():
        cfg = load_config(name)
        assert isinstance(cfg, ModelConfig) and cfg.name == name


@pytest.mark.parametrize("name", ["tiny", "j6gen2_base", "j6gen2_base_amp"])
def test_yaml_round_trip(tmp_path: Path, name: str) -> None:
    cfg = load_config(name)
    path = save_config(cfg, tmp_path / "sub" / f"{name}.yaml")
    assert load_config(path) == cfg
    assert load_config(str(path)) == cfg


def test_j6gen2_preset_values() -> None:
    cfg = load_config("j6gen2_base")
    assert cfg.grid_size == (760, 760, 1) and cfg.feature_map_shape == (760, 760)
    assert cfg.neck.total_out_channels == 384 == cfg.head.in_channels
    amp = load_config("j6gen2_base_amp")
    assert amp.grid_size == (1020, 1020, 1) and amp.feature_map_shape == (510, 510)


@pytest.mark.parametrize("spec, message", [
    ("no_such_preset", "neither a preset (demo, j6gen2_base"),
    ("missing.yaml", "does not exist"),
    ("../tiny", "neither a preset"),
])
def test_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(spec)


def test_yaml_errors_name_the_field(tmp_path: Path) -> None:
    bad_key = tmp_path / "a.yaml"
    bad_key.write_text("name: x\nbackbone: {in_channel: 32}\n")
    with pytest.raises(ConfigError, match="backbone.in_channel"):
        load_config(bad_key)
    bad_value = tmp_path / "b.yaml"
    bad_value.write_text("voxelization: {voxel_size: [0.3, 0.3, 8.0]}\n")
    with pytest.raises(ConfigError, match="voxelization.voxel_size"):
        load_config(bad_value)
    not_yaml = tmp_path / "c.yaml"
    not_yaml.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="cannot read YAML"):
        load_config(not_yaml)
    other = tmp_path / "d.json"
    other.write_text("{}")
    with pytest.raises(ConfigError, match="suffix '.json'"):
        load_config(other)
