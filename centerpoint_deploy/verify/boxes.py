"""Box-level agreement of two backends' detections for one point cloud.

Tensors can agree within tolerance and still give different boxes: a heatmap logit on the
score threshold crosses it, two near-equal scores swap the circle-NMS order, or a tiny
``rot`` vector turns a 1e-4 difference into a large yaw. So the decoded boxes are compared
too.

Matching: a test box may match a reference box of the same class whose BEV centre lies
within ``BoxTolerance.gate`` metres; reference boxes take their nearest free test box in
descending reference-score order (greedy, like the nuScenes matcher).

Pass rule: every box left unmatched (on either side) has a score within
``threshold_margin`` of the decoder's score threshold (its presence legitimately depends on
rounding), and every matched pair differs by at most the box tolerances in centre, size,
yaw, score and velocity.

Moved peaks: in reduced precision two neighbouring cells of a near-flat heatmap peak can swap
which one is the maximum, so the test box comes from another cell than the reference box it
matches (0.26 m and 0.15 m apart in centre and size on the demo model in fp16 where every
number agreed within fp16 rounding). Given the reference's box at every cell (``cells``,
:func:`reference_cells`), a matched pair over the tolerances is a *moved peak* when the test box
equals, within every tolerance, the reference's own box of some cell with its class, and the
two matched scores agree within the score tolerance (both cells scored alike: a tie the
rounding broke the other way). Each test number is still checked against the reference's at
the same cell; only which of two tied cells wins is free.

NMS-edge flips: circle NMS suppresses a box whose squared centre distance to a kept, higher box
of its task is at most the task's radius; a box on that edge is kept or dropped by rounding, and
the box it suppressed then appears in its place (on the demo model in fp16: ``d² = 1.0001`` m²
against a radius of 1 m², and a neighbour 0.23 m away scoring 0.14 lower took its place). A
matched pair over the tolerances is such a flip when the test box is the reference's own box of
a cell (as above, scores aside), the reference box lies on the edge of a higher reference box of
its task (``|d² - radius|`` within what the centre tolerance can move it) and the test box lies
within the reference box's circle. Both need ``cells`` with the NMS rule (mmdet3d's view).

At most ``max_flip_share`` of a frame's boxes may be moved peaks or NMS-edge flips (none in fp32).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from centerpoint_deploy.config.schema import MAX_BOXES, ModelConfig
from centerpoint_deploy.errors import VerificationError
from centerpoint_deploy.postprocess import decode_tasks
from centerpoint_deploy.structures import Detections


#: Unmatched boxes described in a failure reason (all are in ``BoxComparison.unmatched``).
_SHOWN_UNMATCHED = 3


@dataclass(frozen=True)
class BoxTolerance:
    """Allowed differences between matched boxes and the matching settings.

    Attributes:
        center: max 3-D centre distance, metres.
        size: max absolute difference of l, w, h, metres.
        yaw: max absolute yaw difference wrapped to [0, pi], radians.
        score: max absolute score difference.
        velocity: max L2 norm of the (vx, vy) difference, m/s.
        gate: BEV centre distance (metres) beyond which two boxes cannot match.
        threshold_margin: an unmatched box whose score lies within this of the score
            threshold is "near the threshold" and does not fail the comparison.
        max_unmatched_share: share of a frame's boxes (of the larger count) that may be
            unmatched away from the threshold on each side without failing (0 for fp32/fp16;
            bf16 boxes change class where two classes nearly tie, INT8 boxes flip where
            compounded rounding moves a peak).
        max_flip_share: share of a frame's boxes (of the larger count, rounded up) that may be
            moved peaks or NMS-edge flips (module doc; needs the reference's cells; 0 for fp32,
            0.1 for fp16 and bf16).
    """

    center: float = 1e-3
    size: float = 1e-3
    yaw: float = 1e-3
    score: float = 1e-3
    velocity: float = 1e-3
    gate: float = 1.0
    threshold_margin: float = 1e-3
    max_unmatched_share: float = 0.0
    max_flip_share: float = 0.0

    def __post_init__(self) -> None:
        for name, value in self.to_dict().items():
            if not math.isfinite(value) or value < 0:
                raise VerificationError(f"box tolerance {name} = {value!r} is invalid: a finite number >= 0")
        if self.gate <= 0:
            raise VerificationError(f"box tolerance gate = {self.gate!r} is invalid: must be > 0 metres")
        for name in ("max_unmatched_share", "max_flip_share"):
            if getattr(self, name) > 1:
                raise VerificationError(f"box tolerance {name} = {getattr(self, name)!r} is invalid: "
                                        "a fraction in [0, 1]")

    def to_dict(self) -> dict[str, float]:
        return {"center": self.center, "size": self.size, "yaw": self.yaw, "score": self.score,
                "velocity": self.velocity, "gate": self.gate, "threshold_margin": self.threshold_margin,
                "max_unmatched_share": self.max_unmatched_share, "max_flip_share": self.max_flip_share}


#: Default box tolerances per precision. fp16: a heatmap logit off by 1e-2 + 1e-2*|logit|
#: moves a score by at most a quarter of that (sigmoid' <= 1/4), ~0.015 at |logit| = 5; a
#: log-size off by ~0.025 moves a 4.5 m car by ~0.1 m.
DEFAULT_BOX_TOLERANCES: dict[str, BoxTolerance] = {
    "fp32": BoxTolerance(),
    # measured worst against fp32 (docs/precision.md): centre 0.0019 m, size 0.0046 m, yaw 0.041 rad,
    # score 0.0006, velocity 0.024 m/s
    "fp16": BoxTolerance(center=0.02, size=0.1, yaw=0.08, score=0.02, velocity=0.15, gate=1.0,
                         threshold_margin=0.02, max_flip_share=0.1),
    # bf16 against fp32 (CPU, demo model, 20 frames end to end; docs/precision.md), measured worst:
    # centre 0.029 m, size 0.145 m, score 0.011, velocity 0.42 m/s, yaw 0.48 rad where a
    # low-score box's rot vector is short (|(sin, cos)| 0.04: its angle moves by the vector's error over
    # its length), so yaw gets 8 times fp16's 0.08 (bf16's rounding is 8 times fp16's). Score: the
    # heatmap's bf16 tolerance moves a cell's score by up to e = sigmoid'(x) (0.08 + 0.08 |x|) <= 0.0315
    # (at |x| = 1.06); a moved peak's test score (cell B) against the reference's kept one (cell A) is
    # off by up to 3e: B's own error, and A and B within 2e in the reference for their order to swap
    # (fp16: 3e = 0.012 under its 0.02); frame 9's truck 0.070. A box whose class flips where two
    # classes' heatmaps nearly tie (a large vehicle's two labels, 0.08 above the threshold) is
    # unmatched on both sides: up to 5 % of a frame's boxes may be
    "bf16": BoxTolerance(center=0.1, size=0.3, yaw=0.64, score=0.095, velocity=0.8, gate=1.0,
                         threshold_margin=0.04, max_unmatched_share=0.05, max_flip_share=0.1),
    # INT8 against the fake-quant PyTorch reference end to end, measured worst on the demo exports
    # (20 frames; the 69 % plan and two 88 % plans, docs/precision.md): centre 2.05 m, size 1.74 m,
    # yaw 3.05 rad (heading flips of low-score boxes), score 0.5, velocity 8.2 m/s (18.2 under the
    # node's post-processing), 2 of 55 boxes of a frame unmatched 0.1 or more from the threshold:
    # the compounded rounding of the tensors (compare.py). These bounds only catch what no
    # rounding makes; each INT8 layer alone is the sharp check.
    "int8": BoxTolerance(center=3.0, size=2.5, yaw=3.1416, score=0.6, velocity=25.0, gate=2.0,
                         threshold_margin=0.1, max_unmatched_share=0.08),
}


@dataclass(frozen=True)
class UnmatchedBox:
    """A box present in one backend's output and not the other's."""

    side: str  # "reference" or "test"
    index: int  # row in that side's Detections
    label: int
    score: float
    center: tuple[float, float, float]
    near_threshold: bool

    def to_dict(self) -> dict[str, Any]:
        return {"side": self.side, "index": self.index, "label": self.label, "score": self.score,
                "center": list(self.center), "near_threshold": self.near_threshold}


@dataclass
class BoxComparison:
    """Box-level agreement of one frame; truthy when it passed (see module doc).

    ``max_*`` are over matched pairs that are neither moved peaks nor NMS-edge flips (``nan``
    when there are none); ``matched_share`` is matched pairs over the larger of the two box counts
    (1 when both are empty); ``moved`` and ``nms_flips`` count those pairs and
    ``max_moved_center`` is their largest centre distance (``nan`` when none).
    """

    num_ref: int
    num_test: int
    num_matched: int
    matched_share: float
    max_center: float
    max_size: float
    max_yaw: float
    max_score: float
    max_velocity: float
    unmatched: list[UnmatchedBox]
    tolerance: BoxTolerance
    score_threshold: float
    passed: bool
    reasons: list[str] = field(default_factory=list)
    moved: int = 0
    nms_flips: int = 0
    max_moved_center: float = math.nan

    def __bool__(self) -> bool:
        return self.passed

    @property
    def unmatched_near_threshold(self) -> int:
        return sum(u.near_threshold for u in self.unmatched)

    def to_dict(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return None if math.isnan(x) else x

        return {
            "passed": self.passed, "reasons": self.reasons,
            "num_ref": self.num_ref, "num_test": self.num_test, "num_matched": self.num_matched,
            "matched_share": self.matched_share,
            "max_center": num(self.max_center), "max_size": num(self.max_size), "max_yaw": num(self.max_yaw),
            "max_score": num(self.max_score), "max_velocity": num(self.max_velocity),
            "unmatched": [u.to_dict() for u in self.unmatched],
            "moved": self.moved, "nms_flips": self.nms_flips, "max_moved_center": num(self.max_moved_center),
            "score_threshold": self.score_threshold, "tolerance": self.tolerance.to_dict(),
        }


def flips_text(comparisons: Sequence[BoxComparison]) -> str:
    """``", 1 moved peak, 2 NMS-edge flips"`` over ``comparisons`` (``""`` when there were none), for reports."""
    moved, flips = sum(c.moved for c in comparisons), sum(c.nms_flips for c in comparisons)
    parts = [f"{n} {what}{'s' if n > 1 else ''}" for n, what in ((moved, "moved peak"), (flips, "NMS-edge flip")) if n]
    return "".join(f", {part}" for part in parts)


def wrap_angle(angle: np.ndarray) -> np.ndarray:
    """Wrap radians to [-pi, pi)."""
    return (angle + np.pi) % (2 * np.pi) - np.pi


def match_boxes(ref: Detections, test: Detections, gate: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy same-class nearest-centre matching, by descending reference score.

    Args:
        ref, test: detections of one point cloud (``boxes [K, 9]``, ``scores [K]``, ``labels [K]``).
        gate: max BEV centre distance of a match, metres.

    Returns:
        ``(ref_idx [M], test_idx [M])`` int64 row indices of the matched pairs.
    """
    ref_xy = ref.boxes[:, :2].detach().cpu().double().numpy()
    test_xy = test.boxes[:, :2].detach().cpu().double().numpy()
    dist = np.linalg.norm(ref_xy[:, None, :] - test_xy[None, :, :], axis=-1)  # [Kr, Kt]
    same_class = ref.labels.cpu().numpy()[:, None] == test.labels.cpu().numpy()[None, :]
    dist = np.where(same_class & (dist <= gate), dist, np.inf)
    order = np.argsort(-ref.scores.detach().cpu().numpy(), kind="stable")
    taken = np.zeros(len(test), dtype=bool)
    pairs: list[tuple[int, int]] = []
    for i in order:  # greedy matching is sequential by nature; each step is one vector op
        row = np.where(taken, np.inf, dist[i])
        if row.size == 0:
            break
        j = int(np.argmin(row))
        if np.isfinite(row[j]):
            taken[j] = True
            pairs.append((int(i), j))
    matched = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    return matched[:, 0], matched[:, 1]


def _unmatched(dets: Detections, matched: np.ndarray, side: str, threshold: np.ndarray,
               margin: float) -> list[UnmatchedBox]:
    rest = np.setdiff1d(np.arange(len(dets)), matched)
    boxes, scores, labels = _host(dets)
    return [UnmatchedBox(side, int(i), int(labels[i]), float(scores[i]), tuple(float(c) for c in boxes[i, :3]),
                         bool(abs(scores[i] - threshold[i]) < margin)) for i in rest]


@dataclass(frozen=True)
class ReferenceCells:
    """The reference's box at every cell that could replace one of its boxes (module doc).

    Attributes:
        boxes: one box per cell and class, with its score and label.
        nms_radius: ``[C]`` float, each class's circle-NMS radius (m², suppressed when
            ``d² <= radius``), or ``None`` where the boxes went through another NMS (the node's).
        nms_task: ``[C]`` int, each class's head task (NMS runs per task); with ``nms_radius``.
    """

    boxes: Detections
    nms_radius: np.ndarray | None = None
    nms_task: np.ndarray | None = None


def reference_cells(task_maps: list[dict[str, Tensor]], config: ModelConfig, floor: float) -> ReferenceCells:
    """The reference's box at every cell and class scoring at least ``floor`` (batch item 0), decoded
    as mmdet3d decodes a peak (``decode_tasks``), by descending score, with the config's circle NMS:
    what moved peaks and NMS-edge flips are checked against (module doc). ``floor``: the score
    threshold less the score tolerance."""
    counts = [int((maps["heatmap"][:1].float().sigmoid() >= floor).sum()) for maps in task_maps]
    decode = dataclasses.replace(config.decode, max_num=min(max(1, *counts), MAX_BOXES), score_threshold=0.0)
    decoded = decode_tasks(task_maps, dataclasses.replace(config, decode=decode))
    boxes, scores, labels = (torch.cat([getattr(d, name)[0] for d in decoded]) for name in ("boxes", "scores", "labels"))
    keep = scores >= floor
    tasks = np.repeat(np.arange(len(config.head.tasks)), [t.num_classes for t in config.head.tasks])
    return ReferenceCells(Detections(boxes[keep].float(), scores[keep].float(), labels[keep]),
                          np.asarray(config.nms.min_radius, dtype=np.float64)[tasks], tasks)


def _differences(a: np.ndarray, b: np.ndarray, a_scores: np.ndarray, b_scores: np.ndarray) -> np.ndarray:
    """``[..., 5]``: centre distance, largest size difference, wrapped yaw difference, score
    difference and velocity difference of boxes ``a [..., 9]`` and ``b [..., 9]`` (broadcast)."""
    return np.stack([np.linalg.norm(a[..., :3] - b[..., :3], axis=-1), np.abs(a[..., 3:6] - b[..., 3:6]).max(axis=-1),
                     np.abs(wrap_angle(a[..., 6] - b[..., 6])), np.abs(a_scores - b_scores),
                     np.linalg.norm(a[..., 7:9] - b[..., 7:9], axis=-1)], axis=-1)


def _limits(tol: BoxTolerance) -> np.ndarray:
    """``[5]``: the tolerances in :func:`_differences`' order."""
    return np.array([tol.center, tol.size, tol.yaw, tol.score, tol.velocity])


def _host(dets: Detections, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(boxes [K, 9] float64, scores [K] float64, labels [K])`` of ``dets`` (the ``rows`` given)."""
    boxes = dets.boxes.detach().cpu().double().numpy()
    scores = dets.scores.detach().cpu().double().numpy()
    labels = dets.labels.cpu().numpy()
    return (boxes, scores, labels) if rows is None else (boxes[rows], scores[rows], labels[rows])


def _cell_boxes(test: Detections, rows: np.ndarray, cells: Detections, tol: BoxTolerance) -> np.ndarray:
    """``[n]`` bool: whether each test box at ``rows`` is, within every tolerance, the reference's box
    of some cell of its class."""
    if rows.size == 0 or len(cells) == 0:
        return np.zeros(rows.size, dtype=bool)
    tb, ts, tl = _host(test, rows)
    cb, cs, cl = _host(cells)
    within = (_differences(tb[:, None], cb[None], ts[:, None], cs[None]) <= _limits(tol)).all(axis=-1)  # [n, N]
    return (within & (tl[:, None] == cl[None])).any(axis=1)


def _on_nms_edges(ref: Detections, test: Detections, ri: np.ndarray, ti: np.ndarray, cells: ReferenceCells,
                  tol: BoxTolerance) -> np.ndarray:
    """``[n]`` bool per pair ``(ri, ti)``: the reference box lies on the circle-NMS edge of a higher
    reference box of its task (``|d² - radius|`` at most what centres ``tol.center`` off change) and the
    test box lies within the reference box's circle."""
    boxes, scores, labels = _host(ref)
    test_xy = _host(test, ti)[0][:, :2]
    radius, task = cells.nms_radius[labels[ri]], cells.nms_task[labels[ri]]
    slack = 4 * tol.center * np.sqrt(radius) + 4 * tol.center ** 2  # two centres, each moved by tol.center
    d2 = ((boxes[ri, None, :2] - boxes[None, :, :2]) ** 2).sum(-1)  # [n, K]
    higher = (scores[None, :] > scores[ri, None]) & (cells.nms_task[labels][None, :] == task[:, None])
    edge = (higher & (np.abs(d2 - radius[:, None]) <= slack[:, None])).any(axis=1)
    inside = ((test_xy - boxes[ri, :2]) ** 2).sum(-1) <= radius + slack
    return edge & inside


def compare_boxes(ref: Detections, test: Detections, tol: BoxTolerance, score_threshold: float,
                  thresholds_of: Callable[[Detections], np.ndarray] | None = None,
                  cells: ReferenceCells | None = None) -> BoxComparison:
    """Compare the test backend's boxes of one point cloud with the reference's.

    Args:
        ref, test: detections of the same point cloud (boxes ``[x, y, z, l, w, h, yaw, vx, vy]``).
        tol: box tolerances and matching gate.
        score_threshold: the decoder's score threshold (``config.decode.score_threshold``).
        thresholds_of: per-box score thresholds ``[K]`` where they differ by box (the node's per
            class and distance bin, :meth:`AutowarePostprocess.box_thresholds`); default:
            ``score_threshold`` for every box.
        cells: the reference's box at every cell above the threshold less the score tolerance
            (:func:`reference_cells`), to tell moved peaks and NMS-edge flips (module doc);
            ``None``: no pair is either.
    """
    ri, ti = match_boxes(ref, test, tol.gate)
    (rb, rs, _), (tb, ts, _) = _host(ref, ri), _host(test, ti)  # [M, 9], [M]
    differences = _differences(tb, rb, ts, rs)  # [M, 5]
    over = (differences > _limits(tol)).any(axis=1)
    moved, flipped = np.zeros(len(ti), dtype=bool), np.zeros(len(ti), dtype=bool)
    if cells is not None:
        candidates = np.flatnonzero(over)
        own = _cell_boxes(test, ti[candidates], cells.boxes, tol)  # the test box is a reference cell's
        moved[candidates] = own & (differences[candidates, 3] <= tol.score)
        if cells.nms_radius is not None:
            rest = candidates[own & ~moved[candidates]]
            flipped[rest] = _on_nms_edges(ref, test, ri[rest], ti[rest], cells, tol)
    strict = differences[~(moved | flipped)]

    def worst(values: np.ndarray) -> float:
        return float(values.max()) if values.size else math.nan

    max_center, max_size, max_yaw, max_score, max_velocity = (worst(strict[:, k]) for k in range(5))

    def limits(dets: Detections) -> np.ndarray:
        return (np.full(len(dets), score_threshold) if thresholds_of is None
                else np.asarray(thresholds_of(dets), dtype=np.float64))

    unmatched = (_unmatched(ref, ri, "reference", limits(ref), tol.threshold_margin)
                 + _unmatched(test, ti, "test", limits(test), tol.threshold_margin))

    reasons = []
    allowed = math.floor(tol.max_unmatched_share * max(len(ref), len(test)))
    for side in ("reference", "test"):
        far = [u for u in unmatched if u.side == side and not u.near_threshold]
        if len(far) > allowed:
            shown = "; ".join(f"#{u.index} label {u.label} score {u.score:.4f} at ({u.center[0]:.2f}, {u.center[1]:.2f})"
                              for u in far[:_SHOWN_UNMATCHED])
            more = f"; {len(far) - _SHOWN_UNMATCHED} more" if len(far) > _SHOWN_UNMATCHED else ""
            reasons.append(f"{len(far)} {side} box(es) have no match within {tol.gate:g} m and are not within "
                           f"{tol.threshold_margin:g} of the score threshold {score_threshold:g}"
                           + (f" ({allowed} allowed)" if allowed else "") + f": {shown}{more}")
    allowed = math.ceil(tol.max_flip_share * max(len(ref), len(test)))  # a tie is no defect: rounded up
    if moved.sum() + flipped.sum() > allowed:
        reasons.append(f"{int(moved.sum())} moved peak(s) and {int(flipped.sum())} NMS-edge flip(s) "
                       f"({allowed} allowed)")
    for what, value, limit, unit in (("centre", max_center, tol.center, "m"), ("size", max_size, tol.size, "m"),
                                     ("yaw", max_yaw, tol.yaw, "rad"), ("score", max_score, tol.score, ""),
                                     ("velocity", max_velocity, tol.velocity, "m/s")):
        if not math.isnan(value) and value > limit:
            reasons.append(f"matched boxes differ in {what} by up to {value:.4g}{unit} (allowed {limit:g}{unit})")
    num_ref, num_test = len(ref), len(test)
    largest = max(num_ref, num_test)
    return BoxComparison(
        num_ref=num_ref, num_test=num_test, num_matched=int(ri.size),
        matched_share=1.0 if largest == 0 else ri.size / largest,
        max_center=max_center, max_size=max_size, max_yaw=max_yaw, max_score=max_score, max_velocity=max_velocity,
        unmatched=unmatched, tolerance=tol, score_threshold=score_threshold,
        passed=not reasons, reasons=reasons, moved=int(moved.sum()), nms_flips=int(flipped.sum()),
        max_moved_center=worst(differences[moved | flipped, 0]),
    )
