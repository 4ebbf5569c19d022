"""PillarFeatureNet: per-point MLP + max over each pillar's points (mmdet3d structure).

The decoration of raw points into F features (cluster and pillar-centre offsets) is not
here: :mod:`centerpoint_deploy.preprocess` does it, so that the encoder's ONNX input is the
Autoware ``input_features [V, 32, F]`` tensor.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from centerpoint_deploy.config.schema import VoxelEncoderConfig


class PFNLayer(nn.Module):
    """Linear (no bias) -> BatchNorm1d -> ReLU per point, then the max over the pillar's points.

    A non-last layer has ``out_channels // 2`` units and returns every point's features next to
    the pillar max repeated for each point, so its output width is ``out_channels``.

    Padded point slots are not masked: after BN + ReLU they hold ``relu(BN(0))`` and take part
    in the max, exactly as in mmdet3d.
    """

    def __init__(self, in_channels: int, out_channels: int, last_layer: bool, eps: float, momentum: float) -> None:
        super().__init__()
        self.last_layer = last_layer
        units = out_channels if last_layer else out_channels // 2
        # registration order (norm, then linear) matches mmdet3d's state_dict key order
        self.norm = nn.BatchNorm1d(units, eps=eps, momentum=momentum)
        self.linear = nn.Linear(in_channels, units, bias=False)

    def forward(self, features: Tensor) -> Tensor:
        """features (Tensor[V, P, C_in]) -> Tensor[V, 1, C_out] (last layer) or Tensor[V, P, C_out]."""
        x = self.linear(features)  # [V, P, units]
        x = self.norm(x.permute(0, 2, 1)).permute(0, 2, 1)  # BatchNorm1d over the channel axis
        x = torch.relu(x)
        x_max = x.max(dim=1, keepdim=True).values  # [V, 1, units]
        if self.last_layer:
            return x_max
        return torch.cat([x, x_max.expand(-1, x.shape[1], -1)], dim=2)  # [V, P, 2 * units]


class PillarFeatureNet(nn.Module):
    """``pfn_layers``: a stack of :class:`PFNLayer` from F decorated features to ``feat_channels[-1]``."""

    def __init__(self, cfg: VoxelEncoderConfig) -> None:
        super().__init__()
        widths = [cfg.num_features, *cfg.feat_channels]
        self.pfn_layers = nn.ModuleList(
            PFNLayer(widths[i], widths[i + 1], last_layer=i == len(widths) - 2, eps=cfg.norm_eps,
                     momentum=cfg.norm_momentum)
            for i in range(len(widths) - 1)
        )

    def forward(self, features: Tensor) -> Tensor:
        """Encode pillars.

        Args:
            features (Tensor[V, P, F]): decorated points of V pillars, padded slots all zero.

        Returns:
            Tensor[V, 1, C]: one feature vector per pillar, C = ``feat_channels[-1]``.
        """
        for layer in self.pfn_layers:
            features = layer(features)
        return features
