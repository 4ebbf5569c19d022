"""Box-level verification under the Autoware node's post-processing.

Two backends whose head outputs agree within tolerance can still disagree on the car: the
node's per-class, per-distance thresholds, its yaw-norm cut, circle NMS at 0.5 m and IoU-BEV
NMS flip on other edges than mmdet3d's decode. So the reference's and the candidate's head
outputs are post-processed the node's way too and compared box by box (an unmatched box passes
when its score lies within the margin of its own class-and-bin threshold).
"""

from __future__ import annotations

from torch import Tensor

from centerpoint_deploy.detector import Detector
from centerpoint_deploy.postprocess.autoware import AutowarePostprocess
from centerpoint_deploy.postprocess.node_params import NodePostprocessParams
from centerpoint_deploy.verify.boxes import BoxComparison, BoxTolerance, ReferenceCells, compare_boxes


def compare_node_boxes(reference: Detector, reference_outputs: dict[str, Tensor], test_outputs: dict[str, Tensor],
                       tolerance: BoxTolerance, params: NodePostprocessParams | None = None) -> BoxComparison | None:
    """Boxes of batch item 0 of both head outputs (flat, in the reference's rot convention), node style.

    Returns:
        The comparison, or ``None`` when the model has several head tasks (the node reads one).
    """
    if len(reference.config.head.tasks) != 1:
        return None
    node = AutowarePostprocess(reference.config, params)
    reference_maps = reference.task_maps(reference_outputs)
    ref = node(reference_maps)[0]
    test = node(reference.task_maps(test_outputs))[0]
    # moved peaks only: the node's circle and IoU NMS have edges of their own
    cells = ReferenceCells(node.cell_boxes(reference_maps)) if tolerance.max_flip_share > 0 else None
    return compare_boxes(ref, test, tolerance, node.lowest_threshold,
                         thresholds_of=lambda dets: node.box_thresholds(dets).numpy(), cells=cells)
