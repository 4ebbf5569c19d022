"""Fixtures of the pre-processing tests: the tiny preset and variants of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

import centerpoint_deploy
from centerpoint_deploy.config.schema import ModelConfig

TINY_YAML = Path(centerpoint_deploy.__file__).parent / "config" / "presets" / "tiny.yaml"


def tiny_dict() -> dict[str, Any]:
    return yaml.safe_load(TINY_YAML.read_text())


@pytest.fixture(scope="session")
def tiny_config() -> ModelConfig:
    """64 x 64 pillars of 0.4 m over x, y in [-12.8, 12.8), z in [-3, 5); 11 features."""
    return ModelConfig.from_dict(tiny_dict())


@pytest.fixture()
def make_config() -> Callable[..., ModelConfig]:
    """``make_config(section={...})`` -> the tiny preset with those sections' fields replaced."""

    def build(**sections: dict[str, Any]) -> ModelConfig:
        data = tiny_dict()
        for section, fields in sections.items():
            data[section] = {**data.get(section, {}), **fields}
        return ModelConfig.from_dict(data)

    return build
