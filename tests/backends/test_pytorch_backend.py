"""PyTorch backends (contract names, spec checks, timing) and the backend factory."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import Tensor, nn

from centerpoint_deploy import contract
from centerpoint_deploy.device import resolve_device
from centerpoint_deploy.backends.pytorch import TorchEncoderBackend, TorchHeadBackend
from centerpoint_deploy.config import load_config
from centerpoint_deploy.config.schema import HeadTaskConfig
from centerpoint_deploy.errors import BackendError, BackendUnavailableError
from centerpoint_deploy.variant import VariantSpec, build_detector


class TwoTaskModel(nn.Module):
    """encode: mean over points and features, broadcast to 32 channels; two tasks of maps."""

    def encode(self, features: Tensor) -> Tensor:
        return features.mean(dim=(1, 2)).view(-1, 1, 1).expand(-1, 1, 32).clone()

    def forward_dense(self, bev: Tensor) -> list[dict[str, Tensor]]:
        channels = {"heatmap": 2, "reg": 2, "height": 1, "dim": 3, "rot": 2, "vel": 2}
        return [{name: bev[:, :ch] + task for name, ch in channels.items()} for task in range(2)]


@pytest.fixture(scope="module")
def config():
    return load_config("tiny")


def test_encoder_contract_and_spec_checks(config) -> None:
    with TorchEncoderBackend(TwoTaskModel(), config) as encoder:
        assert encoder.name == "pytorch-cpu" and encoder.output_names == (contract.ENCODER_OUTPUT,)
        out = encoder.infer({contract.ENCODER_INPUT: torch.ones(7, 32, 11)})
        assert out[contract.ENCODER_OUTPUT].shape == (7, 1, 32)
        assert encoder.last_inference_time is not None and encoder.last_inference_time >= 0
        with pytest.raises(BackendError, match=r"shape \[7, 32, 10\], expected \['\?', 32, 11\]"):
            encoder.infer({contract.ENCODER_INPUT: torch.ones(7, 32, 10)})
        with pytest.raises(BackendError, match="expected \\['input_features'\\]"):
            encoder.infer({"features": torch.ones(7, 32, 11)})


def test_head_names_outputs_per_task_and_allows_other_grids(config) -> None:
    head = TorchHeadBackend(TwoTaskModel(), config)
    with pytest.raises(BackendError, match="call load"):
        head.infer({contract.HEAD_INPUT: torch.zeros(1, 32, 8, 8)})
    with head:
        outputs = head.infer({contract.HEAD_INPUT: torch.zeros(2, 32, 8, 12)})
    assert tuple(outputs) == contract.head_output_names(1)  # one task: the plain contract names
    assert outputs["heatmap"].shape == (2, 2, 8, 12)


def test_head_of_two_tasks_suffixes_names(config) -> None:
    two_tasks = replace(config, head=replace(config.head, tasks=(HeadTaskConfig(("car", "truck")),
                                                                 HeadTaskConfig(("bus", "bicycle", "pedestrian")))))
    with TorchHeadBackend(TwoTaskModel(), two_tasks) as head:
        outputs = head.infer({contract.HEAD_INPUT: torch.zeros(1, 32, 4, 4)})
    assert tuple(outputs) == contract.head_output_names(2)
    assert outputs["vel_1"].unique().tolist() == [1.0] and outputs["vel_0"].unique().tolist() == [0.0]


def test_factory_rejects_unknown_kinds_and_devices(config) -> None:
    with pytest.raises(BackendError, match="unknown backend 'openvino'; supported: pytorch, onnxruntime, tensorrt"):
        VariantSpec.parse("openvino")
    with pytest.raises(BackendError, match="device 'tpu' is not"):
        resolve_device("tpu")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_without_cuda_is_unavailable(config) -> None:
    with pytest.raises(BackendUnavailableError, match="CUDA is not available"):
        build_detector(VariantSpec.parse("pytorch", device="cuda"), config)
