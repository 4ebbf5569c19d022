"""Fixtures of the export tests: the tiny preset."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import centerpoint_deploy
from centerpoint_deploy.config.schema import ModelConfig

PRESETS = Path(centerpoint_deploy.__file__).parent / "config" / "presets"


@pytest.fixture(scope="session")
def tiny_config() -> ModelConfig:
    """64 x 64 grid (0.4 m over +-12.8 m), F = 11, max_voxels 4000, one 5-class task."""
    return ModelConfig.from_dict(yaml.safe_load((PRESETS / "tiny.yaml").read_text()))
