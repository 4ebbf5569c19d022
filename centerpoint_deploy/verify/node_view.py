"""Box-level verification under the Autoware node's post-processing.

Two backends whose head outputs agree within tolerance can still disagree on the car: the
node's per-class, per-distance thresholds, its yaw-norm cut, circle NMS at 0.5 m and IoU-BEV
NMS flip on other edges than mmdet3d's decode. So the reference's and the candidate's head
outputs are post-processed the node's way too and compared box by box (an unmatched box passes
when its score lies within the margin of its own class-and-bin threshold).
"""

from __future__ import annotations

import math

from torch import Tensor

from centerpoint_deploy.detector import Detector
from centerpoint_deploy.postprocess.autoware import AutowarePostprocess
from centerpoint_deploy.postprocess.node_params import NodePostprocessParams
from centerpoint_deploy.verify.boxes import BoxComparison, BoxTolerance, ReferenceCells, compare_boxes
from centerpoint_deploy.verify.compare import Tolerance


def compare_node_boxes(reference: Detector, reference_outputs: dict[str, Tensor], test_outputs: dict[str, Tensor],
                       tolerance: BoxTolerance, params: NodePostprocessParams | None = None,
                       rot_tolerance: Tolerance | None = None) -> BoxComparison | None:
    """Boxes of batch item 0 of both head outputs (flat, in the reference's rot convention), node style.

    Where ``tolerance`` allows moved peaks, the reference's box at every cell is given to the
    comparison: the cells its decode keeps with the score thresholds lowered by ``tolerance.score``
    and the yaw-norm cut by what ``rot_tolerance`` lets a rot vector's length move near the cut
    (:func:`yaw_norm_slack`): a cell on either edge may be kept by one backend only.

    Returns:
        The comparison, or ``None`` when the model has several head tasks (the node reads one).
    """
    if len(reference.config.head.tasks) != 1:
        return None
    node = AutowarePostprocess(reference.config, params)
    reference_maps = reference.task_maps(reference_outputs)
    ref = node(reference_maps)[0]
    test = node(reference.task_maps(test_outputs))[0]
    cells = None
    if tolerance.max_flip_share > 0:  # moved peaks only: the node's circle and IoU NMS have edges of their own
        slack = 0.0 if rot_tolerance is None else yaw_norm_slack(rot_tolerance, max(node.params.yaw_norm_thresholds))
        cells = ReferenceCells(node.cell_boxes(reference_maps, tolerance.score, slack))
    return compare_boxes(ref, test, tolerance, node.lowest_threshold,
                         thresholds_of=lambda dets: node.box_thresholds(dets).numpy(), cells=cells)


def yaw_norm_slack(rot: Tolerance, cut: float) -> float:
    """How far ``||(rot0, rot1)||`` of a vector near a yaw-norm ``cut`` moves when each component is off
    by up to ``rot.atol + rot.rtol * |component|`` (each component at most ``cut`` there)."""
    return math.sqrt(2.0) * (rot.atol + rot.rtol * cut)
