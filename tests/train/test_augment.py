"""Augmentations move points and boxes together: membership, yaw and velocity stay consistent."""

from __future__ import annotations

import math

import numpy as np
import pytest

from centerpoint_deploy.train.augment import augment_scene, flip_x, flip_y, rotate, scale, translate
from centerpoint_deploy.train.config import AugmentConfig

BOXES = np.array([
    [5.0, 2.0, 0.0, 4.0, 2.0, 1.5, 0.5, 3.0, 1.0],
    [-6.0, -3.0, 0.5, 1.0, 0.8, 1.7, -2.5, 0.0, -1.0],
], dtype=np.float32)


def points_in_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``bool[N, M]``: point n lies inside box m (yawed box, z at the centre)."""
    d = points[:, None, :3] - boxes[None, :, :3]  # [N, M, 3]
    c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    along = d[..., 0] * c + d[..., 1] * s
    across = -d[..., 0] * s + d[..., 1] * c
    return ((np.abs(along) < boxes[:, 3] / 2) & (np.abs(across) < boxes[:, 4] / 2)
            & (np.abs(d[..., 2]) < boxes[:, 5] / 2))


@pytest.fixture()
def scene() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    xyz = rng.uniform([-9, -6, -1.5], [9, 6, 1.5], size=(4000, 3))
    extra = rng.uniform(0, 1, size=(4000, 2))
    return np.concatenate([xyz, extra], axis=1).astype(np.float32), BOXES.copy()


def test_each_transform_keeps_membership(scene) -> None:
    points, boxes = scene
    inside = points_in_boxes(points, boxes)
    assert inside[:, 0].sum() > 20 and inside[:, 1].sum() > 5
    for out_points, out_boxes in (flip_x(points, boxes), flip_y(points, boxes), rotate(points, boxes, 0.7),
                                  scale(points, boxes, 1.05), translate(points, boxes, np.array([1.0, -2.0, 0.3]))):
        assert np.array_equal(points_in_boxes(out_points, out_boxes), inside)
        assert np.array_equal(out_points[:, 3:], points[:, 3:])  # intensity, time lag untouched
    assert np.array_equal(scene[1], BOXES)  # inputs not modified


def test_hand_values() -> None:
    box = np.array([[1.0, 2.0, 0.0, 4.0, 2.0, 1.5, 0.5, 3.0, 1.0]], dtype=np.float32)
    pts = np.zeros((0, 4), dtype=np.float32)
    _, fx = flip_x(pts, box)
    assert fx[0, [0, 1, 6, 7, 8]] == pytest.approx([-1.0, 2.0, math.pi - 0.5, -3.0, 1.0])
    _, fy = flip_y(pts, box)
    assert fy[0, [0, 1, 6, 7, 8]] == pytest.approx([1.0, -2.0, -0.5, 3.0, -1.0])
    _, r = rotate(pts, box, math.pi / 2)  # (x, y) -> (-y, x)
    assert r[0, [0, 1, 6, 7, 8]] == pytest.approx([-2.0, 1.0, 0.5 + math.pi / 2, -1.0, 3.0], abs=1e-6)
    _, s = scale(pts, box, 2.0)
    assert s[0].tolist() == pytest.approx([2.0, 4.0, 0.0, 8.0, 4.0, 3.0, 0.5, 6.0, 2.0])


def test_augment_scene_is_seeded_and_consistent(scene) -> None:
    points, boxes = scene
    cfg = AugmentConfig(translation_std=(0.5, 0.5, 0.1))
    inside = points_in_boxes(points, boxes)
    out_a = augment_scene(points, boxes, cfg, np.random.default_rng(3))
    out_b = augment_scene(points, boxes, cfg, np.random.default_rng(3))
    assert np.array_equal(out_a[0], out_b[0]) and np.array_equal(out_a[1], out_b[1])
    assert not np.allclose(out_a[1], boxes)
    # Shuffled points: compare membership counts per box, and the multiset of extra columns.
    assert np.array_equal(points_in_boxes(*out_a).sum(0), inside.sum(0))
    assert np.array_equal(np.sort(out_a[0][:, 3]), np.sort(points[:, 3]))


def test_disabled_is_identity(scene) -> None:
    points, boxes = scene
    out_points, out_boxes = augment_scene(points, boxes, AugmentConfig.disabled(), np.random.default_rng(0))
    assert np.allclose(out_points, points) and np.allclose(out_boxes, boxes)
