"""PillarFeatureNet against hand-computed values (linear -> BN -> ReLU -> max, padded slots included)."""

from __future__ import annotations

import torch

from centerpoint_deploy.config.schema import VoxelEncoderConfig
from centerpoint_deploy.model.voxel_encoder import PFNLayer, PillarFeatureNet

# one pillar, 3 slots: two points and a zero padded slot; 3 raw features (no decoration)
FEATURES = torch.tensor([[[1.0, 2.0, 0.0], [3.0, -1.0, 0.0], [0.0, 0.0, 0.0]]])


def set_layer(layer: PFNLayer) -> None:
    """Linear picks (x, y); BN: mean (2, 0), var + eps = 4 (scale 1/2), gamma (-1, 1), beta (0, 0.25)."""
    with torch.no_grad():
        layer.linear.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        layer.norm.running_mean.copy_(torch.tensor([2.0, 0.0]))
        layer.norm.running_var.fill_(4.0 - layer.norm.eps)
        layer.norm.weight.copy_(torch.tensor([-1.0, 1.0]))
        layer.norm.bias.copy_(torch.tensor([0.0, 0.25]))


def test_last_layer_max_includes_padded_slot() -> None:
    cfg = VoxelEncoderConfig(in_channels=3, feat_channels=(2,), with_cluster_center=False, with_voxel_center=False)
    encoder = PillarFeatureNet(cfg).eval()
    set_layer(encoder.pfn_layers[0])
    # channel 0: -(x - 2) / 2 = 0.5, -0.5, 1.0 (padded slot) -> relu -> max 1.0
    # channel 1:  y / 2 + 0.25 = 1.25, -0.25, 0.25 -> relu -> max 1.25
    out = encoder(FEATURES)
    torch.testing.assert_close(out, torch.tensor([[[1.0, 1.25]]]))


def test_non_last_layer_concatenates_repeated_max() -> None:
    layer = PFNLayer(3, 4, last_layer=False, eps=1e-3, momentum=0.01).eval()
    assert layer.linear.out_features == 2  # half of out_channels
    set_layer(layer)
    expected = torch.tensor([[[0.5, 1.25, 1.0, 1.25], [0.0, 0.0, 1.0, 1.25], [1.0, 0.25, 1.0, 1.25]]])
    torch.testing.assert_close(layer(FEATURES), expected)


def test_j6gen2_encoder_shapes() -> None:
    encoder = PillarFeatureNet(VoxelEncoderConfig()).eval()  # 11 features -> [16 (x2), 32]
    assert [layer.linear.weight.shape for layer in encoder.pfn_layers] == [(16, 11), (32, 32)]
    assert encoder(torch.randn(7, 32, 11)).shape == (7, 1, 32)
