"""Run a detector's networks once and apply several post-processings to the same head outputs.

Reports show the mmdet3d view ("what training reports") and the Autoware node's ("what the car
outputs") side by side; both must come from one network run, so that their difference is the
post-processing alone.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor

from centerpoint_deploy.detector import Detector
from centerpoint_deploy.errors import ConfigError
from centerpoint_deploy.static_pipeline import StaticPipeline
from centerpoint_deploy.postprocess.modes import PostprocessView
from centerpoint_deploy.structures import Detections


def detect_views(detector: Detector | StaticPipeline, points: Tensor | list[Tensor],
                 views: Sequence[PostprocessView]) -> dict[str, list[Detections]]:
    """Detections of every view for one batch of clouds.

    Args:
        points: ``Tensor[N, D]`` or a list of them.
        views: the post-processings (``PostprocessView.mode`` names the result).

    Returns:
        ``{view.mode: one Detections per cloud}``, each on the detector's device. Any other
        callable ``points -> Detections`` (e.g. a stand-in in tests) gives its own output as
        the single view it is allowed.
    """
    if not isinstance(detector, (Detector, StaticPipeline)):
        if len(views) != 1:
            raise ConfigError(f"{type(detector).__name__} is not a Detector: it has one post-processing, "
                              f"not the views {[v.mode for v in views]}")
        clouds = [points] if isinstance(points, Tensor) else list(points)
        return {views[0].mode: [detector(cloud) for cloud in clouds]}
    task_maps = detector.task_maps(detector.run_stages(points).head_outputs)
    return {view.mode: view.postprocess(task_maps) for view in views}
