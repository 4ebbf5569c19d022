"""The two post-processing modes as interchangeable callables, and the views a report shows.

A post-processor maps one batch's head maps (one dict per task, plain mmdet3d convention) to
one :class:`~centerpoint_deploy.structures.Detections` per item. ``mmdet3d``: top-K decode and
circle NMS per task (what training reports); ``autoware``: the node's
(:class:`~centerpoint_deploy.postprocess.autoware.AutowarePostprocess`, what the car outputs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import Tensor

from centerpoint_deploy.config.schema import MODES, ModelConfig
from centerpoint_deploy.errors import ConfigError
from centerpoint_deploy.postprocess import postprocess
from centerpoint_deploy.postprocess.autoware import AutowarePostprocess
from centerpoint_deploy.postprocess.node_params import NodePostprocessParams
from centerpoint_deploy.structures import Detections

#: ``(task_maps) -> one Detections per batch item``.
Postprocessor = Callable[[list[dict[str, Tensor]]], list[Detections]]

#: What each mode's numbers mean, for report headings.
TITLES = {"mmdet3d": "what training reports", "autoware": "what the car outputs"}


class Mmdet3dPostprocess:
    """mmdet3d's decode and circle NMS per task (:func:`centerpoint_deploy.postprocess.postprocess`) as a callable."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config

    def __call__(self, task_maps: list[dict[str, Tensor]]) -> list[Detections]:
        return postprocess(task_maps, self.config)


def build_postprocess(config: ModelConfig, mode: str | None = None, *, params: NodePostprocessParams | None = None,
                      rot_y_axis_reference: bool = True) -> Postprocessor:
    """The post-processor of ``mode`` (default: ``config.postprocess``).

    Args:
        params: the node's parameters (autoware mode; default: the node's defaults).
        rot_y_axis_reference: the convention of the ONNX the node reads (autoware mode).
    """
    mode = mode or config.postprocess
    if mode not in MODES:
        raise ConfigError(f"postprocess '{mode}' is not one of {', '.join(MODES)}")
    if mode == "mmdet3d":
        return Mmdet3dPostprocess(config)
    return AutowarePostprocess(config, params, rot_y_axis_reference=rot_y_axis_reference)


@dataclass(frozen=True)
class PostprocessView:
    """One post-processing applied to the same head outputs: a column of a report.

    Attributes:
        mode: ``mmdet3d`` or ``autoware``.
        postprocess: the callable.
    """

    mode: str
    postprocess: Postprocessor

    @property
    def title(self) -> str:
        return TITLES[self.mode]


def default_views(config: ModelConfig, *, params: NodePostprocessParams | None = None,
                  rot_y_axis_reference: bool = True) -> list[PostprocessView]:
    """Both views, mmdet3d first; only mmdet3d's for a model the node cannot read (several head tasks)."""
    views = [PostprocessView("mmdet3d", Mmdet3dPostprocess(config))]
    if len(config.head.tasks) == 1:
        views.append(PostprocessView("autoware", AutowarePostprocess(config, params,
                                                                     rot_y_axis_reference=rot_y_axis_reference)))
    return views
