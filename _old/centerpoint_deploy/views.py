"""Run a detector's networks once and apply several post-processings to the same head outputs.

Reports show the mmdet3d view ("what training reports") and the Autoware node's ("what the car
outputs") side by side; both must come from one network run, so that their difference is the
post-processing alone. A view that post-processes as the detector's own run did takes that
run's boxes rather than computing them again.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

from torch import Tensor

from centerpoint_deploy.detector import Detector
from centerpoint_deploy.errors import ConfigError
from centerpoint_deploy.static_pipeline import StaticPipeline
from centerpoint_deploy.postprocess.autoware import AutowarePostprocess, NodeSelection
from centerpoint_deploy.postprocess.modes import Mmdet3dPostprocess, PostprocessView
from centerpoint_deploy.structures import Detections


class PendingView:
    """One view's boxes of a launched batch: made already (``ready``), or made by ``finish`` when asked for."""

    def __init__(self, *, ready: list[Detections] | None = None,
                 finish: Callable[[], list[Detections]] | None = None) -> None:
        if (ready is None) == (finish is None):
            raise ValueError("a PendingView is either ready or has a finish, not both or neither")
        self.ready, self._finish = ready, finish

    def result(self) -> list[Detections]:
        """One :class:`Detections` per cloud (waits for what ``finish`` needs)."""
        if self.ready is None:
            assert self._finish is not None
            self.ready = self._finish()
            self._finish = None
        return self.ready


def detect_views(detector: Detector | StaticPipeline, points: Tensor | list[Tensor],
                 views: Sequence[PostprocessView]) -> dict[str, list[Detections]]:
    """Detections of every view for one batch of clouds (:func:`launch_views`, then each result).

    Args:
        points: ``Tensor[N, D]`` or a list of them.
        views: the post-processings (``PostprocessView.name`` names the result).

    Returns:
        ``{view.name: one Detections per cloud}``, each on the detector's device (the node's
        post-processing and a :class:`StaticPipeline`'s own boxes: on the host). Any other
        callable ``points -> Detections`` (e.g. a stand-in in tests) gives its own output as
        the single view it is allowed.
    """
    return {name: pending.result() for name, pending in launch_views(detector, points, views).items()}


def launch_views(detector: Detector | StaticPipeline, points: Tensor | list[Tensor],
                 views: Sequence[PostprocessView]) -> dict[str, PendingView]:
    """Every view of one batch, queued: the networks run once, each view's device work is queued on
    their head outputs, and what reads on the host is left to :meth:`PendingView.result`.

    With a :class:`StaticPipeline`'s graph (:meth:`StaticPipeline.launch`) nothing here waits for the
    device: the pipeline's own boxes and the node's kept boxes (:meth:`AutowarePostprocess.finish`) are
    read when their results are asked for, which a loop does after queueing its next batch.
    Other views run at once on the head outputs.
    """
    if not isinstance(detector, (Detector, StaticPipeline)):
        if len(views) != 1:
            raise ConfigError(f"{type(detector).__name__} is not a Detector: it has one post-processing, "
                              f"not the views {[v.name for v in views]}")
        clouds = [points] if isinstance(points, Tensor) else list(points)
        return {views[0].name: PendingView(ready=[detector(cloud) for cloud in clouds])}
    launched = detector.launch(points) if isinstance(detector, StaticPipeline) else None  # a graph replays
    if launched is not None:
        head_outputs, own = launched.head_outputs, PendingView(finish=launched.detections)
    else:
        head_outputs, detections = detector.detect_with_head_outputs(points)
        own = PendingView(ready=detections)

    @functools.cache
    def task_maps() -> list[dict[str, Tensor]]:  # made once, only for the views that read them here
        return detector.task_maps(head_outputs)

    def task_maps_again() -> list[dict[str, Tensor]]:  # this batch's, after later launches too
        return detector.task_maps(head_outputs if launched is None else launched.head_outputs_again())

    out = {}
    for view in views:
        node = view.postprocess
        if _is_own_postprocess(detector, view):
            out[view.name] = own
        elif isinstance(node, AutowarePostprocess):
            if launched is not None:  # recorded on the graph's head outputs once, then replayed
                selection = detector.on_head_outputs(launched, node, functools.partial(_select_node, detector, node),
                                                     NodeSelection.to_host)
            else:
                selection = node.launch(task_maps())
            out[view.name] = PendingView(finish=functools.partial(node.finish, selection, task_maps_again))
        else:
            out[view.name] = PendingView(ready=node(task_maps()))
    return out


def _select_node(pipeline: StaticPipeline, node: AutowarePostprocess, head_outputs: dict[str, Tensor]) -> NodeSelection:
    """The node's fixed-shape decode and NMS of a pipeline's flat head outputs."""
    return node.select(pipeline.task_maps(head_outputs))


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
