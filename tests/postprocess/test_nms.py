"""Circle NMS against a plain-Python oracle of mmdet3d's greedy loop, plus hand cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from centerpoint_deploy.postprocess.nms import circle_nms


def greedy_circle_nms_oracle(xy: np.ndarray, scores: np.ndarray, radius: float, post_max_size: int) -> list[int]:
    """mmdet3d ``circle_nms``: greedy in descending score (ties: lower index first), float32 maths."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    suppressed = [False] * len(scores)
    keep = []
    for rank, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        for j in order[rank + 1:]:
            if not suppressed[j]:
                dist = (xy[i, 0] - xy[j, 0]) ** 2 + (xy[i, 1] - xy[j, 1]) ** 2
                if dist <= np.float32(radius):
                    suppressed[j] = True
    return keep[:post_max_size]


def kept(xy: list[list[float]], scores: list[float], radius: float, post_max_size: int = 100,
         valid: list[bool] | None = None) -> list[int]:
    valid_t = torch.tensor(valid if valid is not None else [True] * len(scores))
    mask = circle_nms(torch.tensor([xy]), torch.tensor([scores]), valid_t[None], radius, post_max_size)
    return torch.nonzero(mask[0]).flatten().tolist()


def test_radius_compares_the_squared_distance_inclusive() -> None:
    assert kept([[0, 0], [1, 0]], [0.9, 0.8], radius=1.0) == [0]  # 1.0 <= 1.0: suppressed
    assert kept([[0, 0], [1, 0]], [0.9, 0.8], radius=0.999) == [0, 1]
    # 0.9 m apart: 0.81 m² <= 0.85 suppresses (a squared radius, 0.7225, would not).
    assert kept([[0, 0], [0.9, 0]], [0.9, 0.8], radius=0.85) == [0]


def test_greedy_chain_keeps_the_third_box() -> None:
    # a-b and b-c are close, a-c far: a suppresses b, so c survives.
    assert kept([[0, 0], [0.8, 0], [1.6, 0]], [0.9, 0.8, 0.7], radius=1.0) == [0, 2]
    # Same boxes, scores reordered so b is best: it suppresses both.
    assert kept([[0, 0], [0.8, 0], [1.6, 0]], [0.8, 0.9, 0.7], radius=1.0) == [1]


def test_invalid_boxes_neither_survive_nor_suppress() -> None:
    assert kept([[0, 0], [0.1, 0]], [0.9, 0.8], radius=1.0, valid=[False, True]) == [1]


def test_post_max_size_keeps_the_best() -> None:
    assert kept([[0, 0], [5, 0], [10, 0]], [0.5, 0.9, 0.7], radius=1.0, post_max_size=2) == [1, 2]


@pytest.mark.parametrize("seed", range(5))
def test_matches_greedy_oracle_on_random_boxes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    batch, count, radius, post_max_size = 3, 300, 1.0, 60
    xy = rng.uniform(0, 12, size=(batch, count, 2)).astype(np.float32)  # dense: long suppression chains
    scores = rng.uniform(0, 1, size=(batch, count)).astype(np.float32)
    valid = rng.uniform(size=(batch, count)) > 0.2
    mask = circle_nms(torch.from_numpy(xy), torch.from_numpy(scores), torch.from_numpy(valid), radius, post_max_size)
    for b in range(batch):
        ids = np.flatnonzero(valid[b])
        want = sorted(ids[greedy_circle_nms_oracle(xy[b, ids], scores[b, ids], radius, post_max_size)].tolist())
        assert torch.nonzero(mask[b]).flatten().tolist() == want
