"""Toy graphs that follow the encoder/head contract, exported from small torch modules."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import onnx
import pytest
import torch
from torch import Tensor, nn

from centerpoint_deploy import contract


class ToyEncoder(nn.Module):
    """``[V, P, F]`` -> ``[V, 1, 32]``: a linear layer and a max over the points."""

    def __init__(self, num_features: int = 11) -> None:
        super().__init__()
        self.linear = nn.Linear(num_features, 32)

    def forward(self, features: Tensor) -> Tensor:
        return self.linear(features).amax(dim=1, keepdim=True)


class ToyHead(nn.Module):
    """``[B, 32, H, W]`` -> the six maps of one 5-class task, from one 1x1 conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(32, 5 + 2 + 1 + 3 + 2 + 2, 1)

    def forward(self, bev: Tensor) -> tuple[Tensor, ...]:
        return tuple(self.conv(bev).split([5, 2, 1, 3, 2, 2], dim=1))


def export_toy(module: nn.Module, example: Tensor, path: Path, input_names: list[str],
               output_names: list[str], dynamic_axes: dict) -> Path:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (example,), buffer, dynamo=False, opset_version=17,
                          input_names=input_names, output_names=output_names, dynamic_axes=dynamic_axes)
    onnx.save(onnx.load_from_string(buffer.getvalue()), str(path))
    return path


@pytest.fixture(scope="module")
def toy_encoder() -> ToyEncoder:
    torch.manual_seed(0)
    return ToyEncoder().eval()


@pytest.fixture(scope="module")
def toy_head() -> ToyHead:
    torch.manual_seed(1)
    return ToyHead().eval()


@pytest.fixture(scope="module")
def encoder_onnx(tmp_path_factory: pytest.TempPathFactory, toy_encoder: ToyEncoder) -> Path:
    return export_toy(toy_encoder, torch.randn(7, 32, 11), tmp_path_factory.mktemp("enc") / contract.ENCODER_FILE,
                      [contract.ENCODER_INPUT], [contract.ENCODER_OUTPUT],
                      {contract.ENCODER_INPUT: {0: "num_voxels", 1: "num_max_points"},
                       contract.ENCODER_OUTPUT: {0: "num_voxels"}})


@pytest.fixture(scope="module")
def head_onnx(tmp_path_factory: pytest.TempPathFactory, toy_head: ToyHead) -> Path:
    axes = {0: "batch_size", 2: "H", 3: "W"}
    return export_toy(toy_head, torch.randn(1, 32, 8, 8), tmp_path_factory.mktemp("head") / contract.HEAD_FILE,
                      [contract.HEAD_INPUT], list(contract.HEAD_OUTPUTS),
                      {name: axes for name in (contract.HEAD_INPUT, *contract.HEAD_OUTPUTS)})
