"""Fixtures of the main-job tests: the tiny preset, a saved checkpoint and a tiny generated dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from centerpoint_deploy.config import ModelConfig, load_config
from centerpoint_deploy.data.synthetic import LidarConfig, generate_dataset
from centerpoint_deploy.model import build_model, save_checkpoint

#: Added to the heatmap's final bias so that a random model scores boxes above the threshold
#: (sigmoid(-4.595 + 3) = 0.17 > 0.1) and the report has boxes, AP and box comparisons.
HEATMAP_BIAS_SHIFT = 3.0


@pytest.fixture(scope="session")
def tiny_config() -> ModelConfig:
    return load_config("tiny")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_config: ModelConfig) -> Path:
    """A seeded random tiny model, saved in the mmdet3d checkpoint layout."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(tiny_config)
    with torch.no_grad():
        model.pts_bbox_head.task_heads[0].heatmap[-1].bias += HEATMAP_BIAS_SHIFT
    return save_checkpoint(model, tmp_path_factory.mktemp("checkpoint") / "tiny.pth", meta={"note": "random weights"})


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic T4 scene of 3 key frames from a 16-beam x 360-column sensor."""
    root = tmp_path_factory.mktemp("dataset")
    generate_dataset(root, num_scenes=1, frames_per_scene=3, seed=3, sensor=LidarConfig(beams=16, columns=360))
    return root
