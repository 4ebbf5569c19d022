"""Shared fixtures of the training tests: the tiny preset and default training settings."""

from __future__ import annotations

import pytest

from centerpoint_deploy.config import load_config
from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.train.config import TrainConfig


@pytest.fixture(scope="session")
def tiny_config() -> ModelConfig:
    """64 x 64 grid, 0.4 m cells over +-12.8 m, one task of 5 classes, out_size_factor 1."""
    return load_config("tiny")


@pytest.fixture()
def train_cfg() -> TrainConfig:
    return TrainConfig(max_objs=8).validate()
