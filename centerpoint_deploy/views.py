"""Run a detector's networks once and apply several post-processings to the same head outputs.

Reports show the mmdet3d view ("what training reports") and the Autoware node's ("what the car
outputs") side by side; both must come from one network run, so that their difference is the
post-processing alone. A view that post-processes as the detector's own run did takes that
run's boxes rather than computing them again.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor

from centerpoint_deploy.detector import Detector
from centerpoint_deploy.errors import ConfigError
from centerpoint_deploy.static_pipeline import StaticPipeline
from centerpoint_deploy.postprocess.modes import Mmdet3dPostprocess, PostprocessView
from centerpoint_deploy.structures import Detections


def detect_views(detector: Detector | StaticPipeline, points: Tensor | list[Tensor],
                 views: Sequence[PostprocessView]) -> dict[str, list[Detections]]:
    """Detections of every view for one batch of clouds.

    Args:
        points: ``Tensor[N, D]`` or a list of them.
        views: the post-processings (``PostprocessView.name`` names the result).

    Returns:
        ``{view.name: one Detections per cloud}``, each on the detector's device (the node's
        post-processing: on the host, :class:`~centerpoint_deploy.postprocess.autoware.AutowarePostprocess`). Any other
        callable ``points -> Detections`` (e.g. a stand-in in tests) gives its own output as
        the single view it is allowed.
    """
    if not isinstance(detector, (Detector, StaticPipeline)):
        if len(views) != 1:
            raise ConfigError(f"{type(detector).__name__} is not a Detector: it has one post-processing, "
                              f"not the views {[v.name for v in views]}")
        clouds = [points] if isinstance(points, Tensor) else list(points)
        return {views[0].name: [detector(cloud) for cloud in clouds]}
    head_outputs, detections = detector.detect_with_head_outputs(points)  # a pipeline graph replays
    task_maps = detector.task_maps(head_outputs)
    return {view.name: detections if _is_own_postprocess(detector, view) else view.postprocess(task_maps)
            for view in views}


def _is_own_postprocess(detector: Detector | StaticPipeline, view: PostprocessView) -> bool:
    """Whether ``view`` post-processes as the detector's own run did, so that its boxes are the run's.

    A :class:`Detector` with a post-processor of its own runs that very callable; one without, and
    a :class:`StaticPipeline` (whose fixed-round NMS gives the exact NMS's boxes, falling back
    to it where the rounds do not suffice), run
    :class:`~centerpoint_deploy.postprocess.modes.Mmdet3dPostprocess` of their config.
    """
    if isinstance(detector, Detector) and detector.postprocess is not None:
        return view.postprocess is detector.postprocess
    own = view.postprocess
    return isinstance(own, Mmdet3dPostprocess) and (own.config is detector.config or own.config == detector.config)
