"""The Detector pipeline end to end.

``PeakModel`` is a hand-made network with known outputs: the encoder counts each pillar's
points, the head turns the count into a class-2 heatmap logit (``10 * count - 5``) at the
pillar's cell, with fixed size and yaw. So every stage (voxelize, scatter orientation,
task split, decode, NMS) must be right for the boxes below to come out.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import Tensor, nn

from centerpoint_deploy import contract
from centerpoint_deploy.backends.pytorch import TorchEncoderBackend, TorchHeadBackend
from centerpoint_deploy.config import load_config
from centerpoint_deploy.detector import Detector
from centerpoint_deploy.errors import BackendError, PointCloudError
from centerpoint_deploy.postprocess.rot_reference import apply_rot_y_axis_reference
from centerpoint_deploy.variant import VariantSpec, build_detector

YAW = 0.3
LWH = (2.0, 1.0, 1.5)


class PeakModel(nn.Module):
    """encode: ``[V, P, F]`` -> ``[V, 1, 32]`` with channel 0 = valid points; forward_dense: one task."""

    def __init__(self, rot_y_axis_reference: bool = False) -> None:
        super().__init__()
        self.rot_y_axis_reference = rot_y_axis_reference

    def encode(self, features: Tensor) -> Tensor:
        count = (features.abs().sum(dim=2) > 0).sum(dim=1).to(features.dtype)  # [V]
        out = features.new_zeros(features.shape[0], 1, 32)
        out[:, 0, 0] = count
        return out

    def forward_dense(self, bev: Tensor) -> list[dict[str, Tensor]]:
        batch, _, height, width = bev.shape
        zeros = bev.new_zeros
        heatmap = zeros(batch, 5, height, width) - 20.0
        heatmap[:, 2] = bev[:, 0] * 10 - 5
        dim = zeros(batch, 3, height, width) + torch.log(torch.tensor(LWH, device=bev.device)).view(1, 3, 1, 1)
        rot = torch.stack([zeros(batch, height, width) + math.sin(YAW), zeros(batch, height, width) + math.cos(YAW)], 1)
        maps = {"heatmap": heatmap, "reg": zeros(batch, 2, height, width), "height": zeros(batch, 1, height, width) + 0.5,
                "dim": dim, "rot": rot, "vel": zeros(batch, 2, height, width)}
        return [apply_rot_y_axis_reference(maps) if self.rot_y_axis_reference else maps]


@pytest.fixture(scope="module")
def config():
    return load_config("tiny")


def make_detector(config, rot_y_axis_reference: bool = False) -> Detector:
    model = PeakModel(rot_y_axis_reference)
    return Detector(config, TorchEncoderBackend(model, config), TorchHeadBackend(model, config),
                    rot_y_axis_reference=rot_y_axis_reference)


# Pillar (ix 32, iy 10) holds two points, pillar (ix 5, iy 50) one; one point out of range.
CLOUD = torch.tensor([
    [0.1, -8.7, 0.0, 1.0, 0.0],
    [0.2, -8.5, 1.0, 2.0, 0.0],
    [-10.7, 7.3, -1.0, 3.0, 0.0],
    [30.0, 0.0, 0.0, 4.0, 0.0],
])
EXPECTED_BOXES = [
    [32 * 0.4 - 12.8, 10 * 0.4 - 12.8, 0.5, *LWH, YAW, 0.0, 0.0],
    [5 * 0.4 - 12.8, 50 * 0.4 - 12.8, 0.5, *LWH, YAW, 0.0, 0.0],
]


def test_boxes_of_a_known_model(config) -> None:
    with make_detector(config) as detector:
        detections = detector(CLOUD)
    assert detections.labels.tolist() == [2, 2]
    assert detections.scores.tolist() == pytest.approx([1 / (1 + math.exp(-15)), 1 / (1 + math.exp(-5))])
    assert detections.boxes.tolist() == [pytest.approx(box, abs=1e-5) for box in EXPECTED_BOXES]


def test_y_axis_reference_head_gives_identical_boxes(config) -> None:
    plain = make_detector(config)(CLOUD)
    converted = make_detector(config, rot_y_axis_reference=True)(CLOUD)
    assert torch.equal(plain.boxes, converted.boxes) and torch.equal(plain.scores, converted.scores)
    exported = make_detector(config, rot_y_axis_reference=True)
    unconverted = Detector(config, exported.encoder, exported.head)  # flag forgotten
    assert not torch.allclose(unconverted(CLOUD).boxes, plain.boxes)  # forgetting the flag is visible


def test_stage_outputs_and_batches(config) -> None:
    detector = make_detector(config)
    stages = detector.run_stages([CLOUD, CLOUD[2:3]])
    assert stages.voxels.coords.tolist() == [[0, 0, 10, 32], [0, 0, 50, 5], [1, 0, 50, 5]]
    assert stages.features.shape == (3, 32, 11)
    assert stages.pillar_features[:, 0, 0].tolist() == [2.0, 1.0, 1.0]
    assert stages.spatial_features.shape == (2, 32, 64, 64)
    assert stages.spatial_features[0, 0, 10, 32].item() == 2.0
    assert tuple(stages.head_outputs) == contract.HEAD_OUTPUTS
    assert [len(d) for d in stages.detections] == [2, 1]
    assert stages.detections[1].boxes[0].tolist() == pytest.approx(EXPECTED_BOXES[1], abs=1e-5)
    assert isinstance(detector([CLOUD]), list)
    assert detector.encoder.last_inference_time is not None and detector.head.last_inference_time > 0


def test_bad_points_and_head_outputs_raise(config) -> None:
    detector = make_detector(config)
    with pytest.raises(PointCloudError, match=r"expected \[N, 5\]"):
        detector(CLOUD[:, :4])
    with pytest.raises(PointCloudError, match="no point inside point_cloud_range"):
        detector(CLOUD[3:])
    with pytest.raises(BackendError, match=r"head outputs lack \['vel'\]"):
        detector.detect_from_head_outputs({name: torch.zeros(1) for name in contract.HEAD_OUTPUTS[:-1]})


def test_random_weight_model_end_to_end(config) -> None:
    """The real tiny network: stages agree with the model called directly; batching changes nothing."""
    config = replace(config, head=replace(config.head, init_bias=0.0))  # random scores near 0.5: many boxes
    detector = build_detector(VariantSpec.parse("pytorch"), config)
    encoder = detector.encoder
    generator = torch.Generator().manual_seed(1)
    clouds = [torch.rand(n, 5, generator=generator) * torch.tensor([26.0, 26.0, 8.0, 255.0, 0.0]) - torch.tensor(
        [13.0, 13.0, 3.0, 0.0, 0.0]) for n in (800, 300)]
    stages = detector.run_stages(clouds)
    with torch.inference_mode():
        assert torch.equal(stages.pillar_features, encoder.model.encode(stages.features))
        direct = encoder.model.forward_dense(stages.spatial_features)[0]
    assert all(torch.equal(stages.head_outputs[name], direct[name]) for name in contract.HEAD_OUTPUTS)
    assert stages.head_outputs["heatmap"].shape == (2, 5, 64, 64)
    for cloud, batched in zip(clouds, stages.detections):
        alone = detector(cloud)
        assert 0 < len(alone) <= config.nms.post_max_size
        assert torch.allclose(alone.scores, batched.scores, atol=1e-6) and torch.equal(alone.labels, batched.labels)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(config) -> None:
    model = PeakModel()
    gpu = Detector(config, TorchEncoderBackend(model, config, "cuda"), TorchHeadBackend(model, config, "cuda"))
    on_gpu = gpu(CLOUD)
    assert on_gpu.boxes.device.type == "cuda"
    cpu = make_detector(config)(CLOUD)
    # Same boxes; decode's exp/atan2 may round differently on the GPU in the last bit.
    assert torch.equal(on_gpu.labels.cpu(), cpu.labels)
    torch.testing.assert_close(on_gpu.boxes.cpu(), cpu.boxes, rtol=1e-6, atol=1e-5)
