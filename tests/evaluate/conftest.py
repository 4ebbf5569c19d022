"""Builders shared by the evaluation tests."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pytest

from centerpoint_deploy.evaluate.data_classes import SampleBoxes

MakeBoxes = Callable[..., SampleBoxes]


def _make_boxes(rows: Sequence[Sequence[float]], names: Sequence[str], scores: Sequence[float] | None = None,
                attributes: Sequence[str] | None = None, num_pts: Sequence[int] | None = None) -> SampleBoxes:
    """Rows are ``[x, y]`` (size l=4, w=2, h=1.5, yaw 0, velocity 0) or all 9 columns.
    Without ``scores`` the boxes are ground truth (5 points each); with them, predictions."""
    full = [list(r) + [0.0, 4.0, 2.0, 1.5, 0.0, 0.0, 0.0] if len(r) == 2 else list(r) for r in rows]
    k = len(full)
    is_gt = scores is None
    return SampleBoxes(
        np.array(full, dtype=np.float64).reshape(k, 9), np.array(names, dtype=str),
        np.full(k, -1.0) if is_gt else np.array(scores, dtype=np.float64),
        np.array(attributes if attributes is not None else [""] * k, dtype=str),
        np.array(num_pts if num_pts is not None else [5 if is_gt else -1] * k, dtype=np.int64))


@pytest.fixture
def make_boxes() -> MakeBoxes:
    return _make_boxes
