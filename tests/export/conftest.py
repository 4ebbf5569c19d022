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


@pytest.fixture(scope="session")
def tiny_model(tiny_config: ModelConfig):
    """The tiny CenterPoint with seeded random weights; heatmap bias 0 so it emits boxes."""
    import torch

    from centerpoint_deploy.model import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(tiny_config)
    for task_head in model.pts_bbox_head.task_heads:
        torch.nn.init.zeros_(task_head.heatmap[-1].bias)
    return model


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_model) -> Path:
    from centerpoint_deploy.model import save_checkpoint

    return save_checkpoint(tiny_model, tmp_path_factory.mktemp("ckpt") / "tiny.pth", {"note": "test"})


@pytest.fixture(scope="session")
def plain_export(tmp_path_factory: pytest.TempPathFactory, tiny_model, tiny_config: ModelConfig, tiny_checkpoint: Path):
    """Deploy directory of the tiny model, plain mmdet3d convention, opset 17."""
    from centerpoint_deploy.export.onnx_export import export_onnx

    return export_onnx(tiny_model, tiny_config, tmp_path_factory.mktemp("plain"), checkpoint=tiny_checkpoint)


@pytest.fixture(scope="session")
def rot_export(tmp_path_factory: pytest.TempPathFactory, tiny_model, tiny_config: ModelConfig):
    """Deploy directory of the same model in Autoware's rot_y_axis_reference convention, simplified, opset 16."""
    from centerpoint_deploy.export.onnx_export import export_onnx

    return export_onnx(tiny_model, tiny_config, tmp_path_factory.mktemp("rot"), opset=16,
                       rot_y_axis_reference=True, simplify=True)
