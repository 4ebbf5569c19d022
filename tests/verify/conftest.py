"""Fixtures of the verification tests: the tiny preset with "trained-like" weights, its exports.

The seeded random model gets random BatchNorm statistics (so folding BN into convs matters,
as in a trained model) and a heatmap bias chosen so that a few dozen cells of the first
frame score above the decoder's threshold (a random model's heatmap otherwise sits at
sigmoid(-4.595) = 0.01 and no box would be compared).
"""

from __future__ import annotations

import math
from pathlib import Path

import onnx
import pytest
import torch
from onnx import numpy_helper

from centerpoint_deploy.backends.onnxruntime import OnnxRuntimeBackend
from centerpoint_deploy.backends.pytorch import TorchEncoderBackend, TorchHeadBackend
from centerpoint_deploy.config import ModelConfig, load_config
from centerpoint_deploy.detector import Detector
from centerpoint_deploy.export.onnx_export import export_onnx, random_points
from centerpoint_deploy.model import CenterPoint, build_model, save_checkpoint

#: Boxes wanted above the score threshold on frame 0 (fewer than decode.max_num = 100).
TARGET_BOXES = 30


@pytest.fixture(scope="session")
def config() -> ModelConfig:
    return load_config("tiny")


@pytest.fixture(scope="session")
def frames(config: ModelConfig) -> list[torch.Tensor]:
    """Two seeded clouds over the whole range (2048 points each)."""
    return [random_points(config, seed=seed) for seed in (0, 1)]


@pytest.fixture(scope="session")
def model(config: ModelConfig, frames: list[torch.Tensor]) -> CenterPoint:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = build_model(config)
        for module in net.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.data.uniform_(0.8, 1.5)
                module.bias.data.uniform_(-0.1, 0.1)
    detector = Detector(config, TorchEncoderBackend(net, config), TorchHeadBackend(net, config))
    logits = detector.run_stages(frames[0]).head_outputs["heatmap"].flatten()
    # Shift the bias so the TARGET_BOXES-th largest logit lands 0.5 above logit(threshold).
    threshold = config.decode.score_threshold
    kth = torch.topk(logits, TARGET_BOXES).values[-1]
    shift = math.log(threshold / (1 - threshold)) + 0.5 - float(kth)
    with torch.no_grad():
        net.pts_bbox_head.task_heads[0].heatmap[-1].bias += shift
    return net.eval()


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, model: CenterPoint) -> Path:
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny.pth", {"note": "verify tests"})


@pytest.fixture(scope="session")
def deploy_dir(tmp_path_factory: pytest.TempPathFactory, model: CenterPoint, config: ModelConfig,
               checkpoint: Path) -> Path:
    out = tmp_path_factory.mktemp("deploy")
    export_onnx(model, config, out, checkpoint=checkpoint)
    return out


@pytest.fixture(scope="session")
def rot_deploy_dir(tmp_path_factory: pytest.TempPathFactory, model: CenterPoint, config: ModelConfig) -> Path:
    """An export in Autoware's rot_y_axis_reference convention."""
    out = tmp_path_factory.mktemp("deploy_rot")
    export_onnx(model, config, out, rot_y_axis_reference=True)
    return out


@pytest.fixture()
def reference(model: CenterPoint, config: ModelConfig) -> Detector:
    return Detector(config, TorchEncoderBackend(model, config), TorchHeadBackend(model, config))


def ort_detector(config: ModelConfig, directory: Path, rot: bool, head_file: Path | None = None) -> Detector:
    """A detector on the ONNX Runtime CPU backends of ``directory`` (optionally another head file), claiming ``rot``."""
    return Detector(config, OnnxRuntimeBackend(directory / "pts_voxel_encoder.onnx", "cpu", part="encoder"),
                    OnnxRuntimeBackend(head_file or directory / "pts_backbone_neck_head.onnx", "cpu", part="head"),
                    rot_y_axis_reference=rot)


def scaled_initializer_copy(source: Path, target: Path, node_name: str, factor: float) -> Path:
    """Copy ``source`` to ``target`` with the weight initializer of node ``node_name`` scaled by ``factor``."""
    graph = onnx.load(str(source))
    node = next(n for n in graph.graph.node if n.name == node_name)
    weight = next(i for i in graph.graph.initializer if i.name == node.input[1])
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * factor, weight.name))
    onnx.save(graph, str(target))
    return target
