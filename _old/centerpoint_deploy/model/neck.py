"""SECONDFPN: bring every backbone stage to one stride and concatenate (mmdet3d structure)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from centerpoint_deploy.config.schema import NeckConfig


def upsample_layer(in_channels: int, out_channels: int, stride: float, use_conv_for_no_stride: bool) -> nn.Module:
    """The resampling conv of one branch (no bias).

    A stride above 1 (or exactly 1 without ``use_conv_for_no_stride``) is a transposed conv
    with kernel = stride; a stride below 1 (or 1 with the flag) is a conv with
    kernel = stride = ``round(1 / stride)``, so 0.5 halves the resolution.
    """
    if stride > 1 or (stride == 1 and not use_conv_for_no_stride):
        k = int(round(stride))
        return nn.ConvTranspose2d(in_channels, out_channels, k, stride=k, bias=False)
    k = int(round(1 / stride))
    return nn.Conv2d(in_channels, out_channels, k, stride=k, bias=False)


class SECONDFPN(nn.Module):
    """``deblocks.i`` = Sequential(upsample_layer, BatchNorm2d, ReLU); outputs concatenated on channels."""

    def __init__(self, cfg: NeckConfig) -> None:
        super().__init__()
        self.deblocks = nn.ModuleList(
            nn.Sequential(
                upsample_layer(c_in, c_out, stride, cfg.use_conv_for_no_stride),
                nn.BatchNorm2d(c_out, eps=cfg.norm_eps, momentum=cfg.norm_momentum),
                nn.ReLU(),
            )
            for c_in, c_out, stride in zip(cfg.in_channels, cfg.out_channels, cfg.upsample_strides)
        )

    def forward(self, features: list[Tensor]) -> Tensor:
        """features (one Tensor[B, in_channels[i], h_i, w_i] per stage) -> Tensor[B, sum(out_channels), h, w]."""
        return torch.cat([deblock(x) for deblock, x in zip(self.deblocks, features)], dim=1)
