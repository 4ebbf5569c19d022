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

#: What each view's numbers mean, for report headings.
TITLES = {"mmdet3d": "what training reports", "autoware": "what the car outputs",
          "calibration": "the node's boxes down to the calibration floor"}

#: Name of the view :func:`calibration_view` makes (``<backend>@calibration``).
CALIBRATION_VIEW = "calibration"
#: Score every threshold of the calibration view is lowered to: the candidates the calibration
#: can choose from start here (mmdet3d's decode keeps scores above 0.1 too). At 0 every grid
#: cell would be a box and the node's quadratic NMS would be the whole cost.
DEFAULT_CALIBRATION_FLOOR = 0.1


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
        name: what names its results (``<backend>@<name>``); the mode unless given.
    """

    mode: str
    postprocess: Postprocessor
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.mode)

    @property
    def title(self) -> str:
        return TITLES.get(self.name, TITLES[self.mode])


def default_views(config: ModelConfig, *, params: NodePostprocessParams | None = None,
                  rot_y_axis_reference: bool = True, calibration_floor: float | None = None) -> list[PostprocessView]:
    """Both views, mmdet3d first; only mmdet3d's for a model the node cannot read (several head tasks).

    Args:
        params: the node's parameters of the autoware view (default: the node's defaults).
        calibration_floor: also the :func:`calibration_view` at this floor (node models only).
    """
    views = [PostprocessView("mmdet3d", Mmdet3dPostprocess(config))]
    if len(config.head.tasks) == 1:
        views.append(PostprocessView("autoware", AutowarePostprocess(config, params,
                                                                     rot_y_axis_reference=rot_y_axis_reference)))
        if calibration_floor is not None:
            views.append(calibration_view(config, params, calibration_floor,
                                          rot_y_axis_reference=rot_y_axis_reference))
    return views


def calibration_view(config: ModelConfig, params: NodePostprocessParams | None = None,
                     floor: float = DEFAULT_CALIBRATION_FLOOR, *, rot_y_axis_reference: bool = True) -> PostprocessView:
    """The node's post-processing with every score threshold at ``floor``: the predictions a
    threshold calibration (:mod:`centerpoint_deploy.evaluate.calibrate`) chooses from.

    Everything else (yaw-norm thresholds, both NMS, the remapper) is ``params``' (default: the
    node's defaults), so the boxes are the node's with only the thresholds varied.

    Raises:
        ConfigError: ``floor`` outside [0, 1).
    """
    if not 0.0 <= floor < 1.0:
        raise ConfigError(f"calibration floor must be in [0, 1), got {floor!r}")
    params = params if params is not None else NodePostprocessParams.defaults(config.class_names)
    return PostprocessView("autoware", AutowarePostprocess(config, params.with_thresholds_at(floor),
                                                           rot_y_axis_reference=rot_y_axis_reference),
                           CALIBRATION_VIEW)
