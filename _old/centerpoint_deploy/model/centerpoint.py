"""CenterPoint: the four parts that hold weights, named as in mmdet3d so checkpoints load one to one.

The pipeline between them lives outside the model, as Autoware splits it::

    decorated features [V, P, F] --encode--> pillars [V, 1, C]
        --preprocess.scatter.scatter_to_bev--> BEV map [B, C, H, W]
        --forward_dense--> per task {heatmap, reg, height, dim, rot, vel} [B, *, h, w]

Probe points for layer-by-layer comparison are plain module names (:meth:`probe_points`);
attach forward hooks with ``model.get_submodule(name)``.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.errors import BackendError
from centerpoint_deploy.model.backbone import SECOND
from centerpoint_deploy.model.head import CenterHead
from centerpoint_deploy.model.neck import SECONDFPN
from centerpoint_deploy.model.voxel_encoder import PillarFeatureNet


class CenterPoint(nn.Module):
    """``pts_voxel_encoder``, ``pts_backbone``, ``pts_neck``, ``pts_bbox_head`` of one config.

    The scatter (mmdet3d ``pts_middle_encoder``) has no weights and is
    :func:`centerpoint_deploy.preprocess.scatter.scatter_to_bev`.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.pts_voxel_encoder = PillarFeatureNet(config.voxel_encoder)
        self.pts_backbone = SECOND(config.backbone)
        self.pts_neck = SECONDFPN(config.neck)
        self.pts_bbox_head = CenterHead(config.head)

    def encode(self, features: Tensor) -> Tensor:
        """features (Tensor[V, P, F]) decorated, padded slots zero -> pillar features Tensor[V, 1, C]."""
        f = self.config.num_features
        if features.dim() != 3 or features.shape[2] != f:
            raise BackendError(f"encoder input must be [num_voxels, points, {f}], got {list(features.shape)}")
        return self.pts_voxel_encoder(features)

    def forward_dense(self, spatial_features: Tensor) -> list[dict[str, Tensor]]:
        """Backbone -> neck -> head.

        Args:
            spatial_features (Tensor[B, C, H, W]): scattered pillar features, rows = y, columns = x.

        Returns:
            per task ``{"heatmap", "reg", "height", "dim", "rot", "vel"}``, each Tensor[B, *, H / f, W / f]
            with f = ``decode.out_size_factor``.
        """
        c = self.config.backbone.in_channels
        if spatial_features.dim() != 4 or spatial_features.shape[1] != c:
            raise BackendError(f"head input must be [batch, {c}, H, W], got {list(spatial_features.shape)}")
        multiple = input_multiple(self.config)
        h, w = spatial_features.shape[2:]
        if h % multiple or w % multiple:
            raise BackendError(f"head input H x W = {h} x {w} must be multiples of {multiple} for this network")
        return self.pts_bbox_head(self.pts_neck(self.pts_backbone(spatial_features)))

    def probe_points(self) -> list[str]:
        """Module names whose outputs are the network's intermediate tensors, in execution order.

        PFN layers, backbone stages, neck branches, the neck (concatenation), the shared head
        conv, then every task's branches (heatmap first).
        """
        names = [f"pts_voxel_encoder.pfn_layers.{i}" for i in range(len(self.pts_voxel_encoder.pfn_layers))]
        names += [f"pts_backbone.blocks.{i}" for i in range(len(self.pts_backbone.blocks))]
        names += [f"pts_neck.deblocks.{i}" for i in range(len(self.pts_neck.deblocks))]
        names += ["pts_neck", "pts_bbox_head.shared_conv"]
        for t, task_head in enumerate(self.pts_bbox_head.task_heads):
            names += [f"pts_bbox_head.task_heads.{t}.{m}" for m in ("heatmap", *task_head.map_names)]
        return names


def input_multiple(config: ModelConfig) -> int:
    """H and W of the BEV map must be multiples of this so that every neck branch lands on the
    same size: the product of the backbone strides, and ``out_size_factor``."""
    return math.lcm(math.prod(config.backbone.layer_strides), config.decode.out_size_factor)
