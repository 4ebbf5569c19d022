"""SECOND: a 2-D convolutional backbone of strided stages (mmdet3d structure)."""

from __future__ import annotations

from torch import Tensor, nn

from centerpoint_deploy.config.schema import BackboneConfig


def conv_bn_relu(in_channels: int, out_channels: int, stride: int, eps: float, momentum: float) -> list[nn.Module]:
    """3x3 conv (no bias, padding 1) -> BatchNorm2d -> ReLU, as a flat list of layers."""
    return [
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels, eps=eps, momentum=momentum),
        nn.ReLU(),
    ]


class SECOND(nn.Module):
    """``blocks.i`` = Sequential(conv3x3 stride s, BN, ReLU, [conv3x3, BN, ReLU] * layer_nums[i])."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        in_widths = [cfg.in_channels, *cfg.out_channels[:-1]]
        self.blocks = nn.ModuleList()
        for c_in, c_out, num, stride in zip(in_widths, cfg.out_channels, cfg.layer_nums, cfg.layer_strides):
            layers = conv_bn_relu(c_in, c_out, stride, cfg.norm_eps, cfg.norm_momentum)
            for _ in range(num):
                layers += conv_bn_relu(c_out, c_out, 1, cfg.norm_eps, cfg.norm_momentum)
            self.blocks.append(nn.Sequential(*layers))

    def forward(self, x: Tensor) -> list[Tensor]:
        """x (Tensor[B, C_in, H, W]) -> one Tensor[B, out_channels[i], H / s_0..s_i, W / s_0..s_i] per stage."""
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        return outs
