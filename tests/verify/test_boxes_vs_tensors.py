"""Tensors can agree within tolerance while boxes do not: the box-level check catches it.

Head maps are built by hand for the tiny grid (64 x 64, 0.4 m cells, range -12.8 m): one
hot heatmap cell per case, everything else far below the threshold.
"""

from __future__ import annotations

import math

import torch

from centerpoint_deploy import contract
from centerpoint_deploy.postprocess import postprocess
from centerpoint_deploy.verify.boxes import BoxTolerance, compare_boxes
from centerpoint_deploy.verify.compare import compare_tensors, default_tolerances

TOL = default_tolerances("fp32")


def maps(hot_logit: float, rot: tuple[float, float]) -> dict[str, torch.Tensor]:
    """One task's maps [1, c, 64, 64], float64 so hand-set values stay exact; one hot cell at row 10, col 20."""
    out = {name: torch.zeros(1, c, 64, 64, dtype=torch.float64)
           for name, c in zip(contract.HEAD_OUTPUTS, (5, 2, 1, 3, 2, 2))}
    out["heatmap"] -= 20.0
    out["heatmap"][0, 0, 10, 20] = hot_logit
    out["rot"][0, :, 10, 20] = torch.tensor(rot, dtype=torch.float64)
    return out


def boxes_of(task_maps: dict[str, torch.Tensor], config):
    return postprocess([{k: v.float() for k, v in task_maps.items()}], config)[0]


def all_tensors_pass(ref: dict, test: dict) -> bool:
    return all(compare_tensors(n, ref[n], test[n], TOL.for_output(n)) for n in contract.HEAD_OUTPUTS)


def test_score_on_the_threshold_differs_in_boxes_and_is_flagged_near_threshold(config):
    threshold = config.decode.score_threshold
    at = math.log(threshold / (1 - threshold))
    ref, test = maps(at + 4e-5, (0.0, 1.0)), maps(at - 4e-5, (0.0, 1.0))  # |d| = 8e-5 < atol 1e-4
    assert all_tensors_pass(ref, test)
    ref_boxes, test_boxes = boxes_of(ref, config), boxes_of(test, config)
    assert (len(ref_boxes), len(test_boxes)) == (1, 0)
    result = compare_boxes(ref_boxes, test_boxes, BoxTolerance(), threshold)
    assert [(u.side, u.near_threshold) for u in result.unmatched] == [("reference", True)]
    assert result  # present on one side only because of rounding at the threshold: tolerated, and said so


def test_tiny_rot_vector_passes_tensor_tolerance_but_fails_on_yaw(config):
    # rot = (sin, cos) of a weak prediction: (5e-5, 5e-5) -> yaw pi/4; (5e-5, -4e-5) -> yaw 2.24 rad.
    ref, test = maps(2.0, (5e-5, 5e-5)), maps(2.0, (5e-5, -4e-5))
    assert all_tensors_pass(ref, test)
    result = compare_boxes(boxes_of(ref, config), boxes_of(test, config), BoxTolerance(), config.decode.score_threshold)
    assert not result
    assert result.num_matched == 1
    expected = math.atan2(5e-5, -4e-5) - math.pi / 4
    assert abs(result.max_yaw - expected) < 1e-5
    assert result.reasons == [f"matched boxes differ in yaw by up to {result.max_yaw:.4g}rad (allowed 0.001rad)"]


def tied_peak(second_logit: float, reg_x: float = 0.5) -> dict[str, torch.Tensor]:
    """A peak over two neighbouring cells (row 10, cols 20 and 21) whose sizes differ (log l 1.5 and
    1.6): the first at logit 2, the second at ``second_logit`` with x offset ``reg_x``."""
    out = maps(2.0, (0.0, 1.0))
    out["heatmap"][0, 0, 10, 21] = second_logit
    out["rot"][0, :, 10, 21] = torch.tensor((0.0, 1.0), dtype=torch.float64)
    out["reg"][0, 0, 10, 20], out["reg"][0, 0, 10, 21] = 0.5, reg_x
    out["dim"][0, 0, 10, 20], out["dim"][0, 0, 10, 21] = 1.5, 1.6
    return out


def test_a_tie_broken_the_other_way_is_a_moved_peak_checked_at_its_own_cell(config):
    """fp16 rounding that lifts the second of two near-tied cells moves the box one cell (0.4 m,
    0.5 m in length); with the reference's cells it passes as a moved peak, since the test box is the
    reference's own box of that cell; without them it fails on the centre."""
    from centerpoint_deploy.verify.boxes import DEFAULT_BOX_TOLERANCES, reference_cells

    fp16 = DEFAULT_BOX_TOLERANCES["fp16"]
    threshold = config.decode.score_threshold
    ref, test = tied_peak(1.999), tied_peak(1.999)
    test["heatmap"][0, 0, 10, 20] = 1.998  # the rounding flips the tie: the second cell is the peak
    ref_boxes, test_boxes = boxes_of(ref, config), boxes_of(test, config)
    assert len(ref_boxes) == len(test_boxes) == 1  # circle NMS keeps one of the two
    cells = reference_cells([{k: v.float() for k, v in ref.items()}], config, threshold - fp16.score)
    assert len(cells.boxes) == 2
    moved = compare_boxes(ref_boxes, test_boxes, fp16, threshold, cells=cells)
    assert moved and moved.moved == 1 and abs(moved.max_moved_center - 0.4) < 1e-5
    assert math.isnan(moved.max_center)  # no pair left to compare strictly
    plain = compare_boxes(ref_boxes, test_boxes, fp16, threshold)
    assert not plain and "centre" in plain.reasons[0]


def test_a_moved_box_that_is_not_the_references_own_fails(config):
    """The second cell's x offset wrong by 0.1 cells in the test (a defect, not a tie): no reference cell
    has that box, so the pair fails even with the cells; a second cell that scored well below the
    first in the reference (no tie) fails too."""
    from centerpoint_deploy.verify.boxes import DEFAULT_BOX_TOLERANCES, reference_cells

    fp16 = DEFAULT_BOX_TOLERANCES["fp16"]
    threshold = config.decode.score_threshold
    ref = tied_peak(1.999)
    cells = reference_cells([{k: v.float() for k, v in ref.items()}], config, threshold - fp16.score)
    wrong = tied_peak(1.999, reg_x=0.6)
    wrong["heatmap"][0, 0, 10, 20] = 1.998
    result = compare_boxes(boxes_of(ref, config), boxes_of(wrong, config), fp16, threshold, cells=cells)
    assert not result and result.moved == 0

    untied = tied_peak(1.0)  # the second cell 0.15 below in score in the reference
    cells = reference_cells([{k: v.float() for k, v in untied.items()}], config, threshold - fp16.score)
    lifted = tied_peak(2.1)
    result = compare_boxes(boxes_of(untied, config), boxes_of(lifted, config), fp16, threshold, cells=cells)
    assert not result and result.moved == 0


def nms_edge(reg_r: float, logit_r: float = 2.0) -> dict[str, torch.Tensor]:
    """Three cells of row 10: A (col 20, logit 3, x = -4.6 m), R (col 22, x offset ``reg_r``: 1.0001 m
    from A at 1.00025, so ``d²`` just over the 1 m² radius) and T (col 23, logit 1.5, x = -3.4 m)."""
    out = maps(3.0, (0.0, 1.0))
    out["reg"][0, 0, 10, 20] = 0.5
    for col, logit, reg in ((22, logit_r, reg_r), (23, 1.5, 0.5)):
        out["heatmap"][0, 0, 10, col] = logit
        out["rot"][0, :, 10, col] = torch.tensor((0.0, 1.0), dtype=torch.float64)
        out["reg"][0, 0, 10, col] = reg
    return out


def test_a_box_on_the_nms_edge_and_the_box_it_suppressed_are_an_nms_flip(config):
    """R's centre rounded 0.1 mm closer to A puts it inside A's circle (d² <= 1 m²): R goes and T, which R
    suppressed, comes. T is the reference's own box of its cell and R sat on the edge: an NMS-edge flip.
    An R far from the edge (d² = 1.69 m²) dropped by the test is no flip."""
    from centerpoint_deploy.verify.boxes import DEFAULT_BOX_TOLERANCES, reference_cells

    fp16 = DEFAULT_BOX_TOLERANCES["fp16"]
    threshold = config.decode.score_threshold
    ref, test = nms_edge(1.00025), nms_edge(0.9999)
    ref_boxes, test_boxes = boxes_of(ref, config), boxes_of(test, config)
    assert len(ref_boxes) == len(test_boxes) == 2
    cells = reference_cells([{k: v.float() for k, v in ref.items()}], config, threshold - fp16.score)
    flip = compare_boxes(ref_boxes, test_boxes, fp16, threshold, cells=cells)
    assert flip and (flip.moved, flip.nms_flips) == (0, 1)
    assert not compare_boxes(ref_boxes, test_boxes, fp16, threshold)

    far, dropped = nms_edge(1.75), nms_edge(1.75, logit_r=-20.0)  # R 1.3 m from A; the test loses it
    cells = reference_cells([{k: v.float() for k, v in far.items()}], config, threshold - fp16.score)
    result = compare_boxes(boxes_of(far, config), boxes_of(dropped, config), fp16, threshold, cells=cells)
    assert not result and result.nms_flips == 0
