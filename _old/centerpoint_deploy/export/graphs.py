"""The two exported graphs as modules composed from the real model (no export twins).

:class:`EncoderGraph` runs the model's voxel encoder (``model.encode``); :class:`HeadGraph` runs
backbone → neck → head and flattens the per-task maps into the contract's positional output
order, optionally in Autoware's ``rot_y_axis_reference`` convention. Both keep the model as
their ``model`` submodule, so exported node names carry the model's own module scopes.
"""

from __future__ import annotations

from torch import Tensor, nn

from centerpoint_deploy import contract
from centerpoint_deploy.postprocess.rot_reference import apply_rot_y_axis_reference


class EncoderGraph(nn.Module):
    """``input_features [V, P, F]`` → ``pillar_features [V, 1, C]`` via ``model.encode``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_features: Tensor) -> Tensor:
        return self.model.encode(input_features)


class HeadGraph(nn.Module):
    """``spatial_features [B, C, H, W]`` → ``(heatmap, reg, height, dim, rot, vel)`` per task.

    Args:
        model: a ``CenterPoint`` whose ``forward_dense(bev)`` returns one dict of maps per task.
        rot_y_axis_reference: emit dim as ``(w, l, h)`` and rot as ``(-cos, -sin)`` (contract §2),
            the convention Autoware's decoder expects.
    """

    def __init__(self, model: nn.Module, rot_y_axis_reference: bool = False) -> None:
        super().__init__()
        self.model = model
        self.rot_y_axis_reference = rot_y_axis_reference

    def forward(self, spatial_features: Tensor) -> tuple[Tensor, ...]:
        """Returns ``6 * num_tasks`` maps ``[B, c, h, w]`` in :func:`contract.head_output_names` order."""
        tasks = self.model.forward_dense(spatial_features)
        if self.rot_y_axis_reference:
            tasks = [apply_rot_y_axis_reference(maps) for maps in tasks]
        return tuple(maps[name] for maps in tasks for name in contract.HEAD_OUTPUTS)
