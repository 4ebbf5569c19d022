"""Pillar decoration: feature order and values against hand-computed pillars."""

from __future__ import annotations

import pytest
import torch

from centerpoint_deploy.contract import FEATURE_NAMES
from centerpoint_deploy.preprocess import prepare_encoder_input
from centerpoint_deploy.preprocess.features import decorate
from centerpoint_deploy.structures import Voxels

# Two points of pillar (ix 32, iy 32) of the tiny grid: centre xc = yc = 32 * 0.4 - 12.6 = 0.2,
# zc = -3 + 8 / 2 = 1. Means: x̄ = 0.2, ȳ = 0.125, z̄ = 0.
P1 = [0.1, 0.2, 1.0, 10.0, 0.0]
P2 = [0.3, 0.05, -1.0, 20.0, 0.5]
EXPECTED_11 = [
    [0.1, 0.2, 1.0, 10.0, 0.0, -0.1, 0.075, 1.0, -0.1, 0.0, 0.0],
    [0.3, 0.05, -1.0, 20.0, 0.5, 0.1, -0.075, -1.0, 0.1, -0.15, -2.0],
]


def two_point_pillar() -> Voxels:
    points = torch.zeros(1, 32, 5)
    points[0, 0], points[0, 1] = torch.tensor(P1), torch.tensor(P2)
    return Voxels(points, torch.tensor([2], dtype=torch.int32), torch.tensor([[0, 0, 32, 32]], dtype=torch.int32))


def test_eleven_features_hand_computed(tiny_config) -> None:
    features = decorate(two_point_pillar(), tiny_config)
    assert features.shape == (1, 32, 11) and len(FEATURE_NAMES[11]) == 11
    assert features[0, :2].tolist() == [pytest.approx(row, abs=1e-6) for row in EXPECTED_11]
    assert features[0, 2:].abs().sum() == 0  # padded slots stay zero after decoration


def test_voxelize_then_decorate_gives_the_same_pillar(tiny_config) -> None:
    voxels, features = prepare_encoder_input([torch.tensor([P1, P2])], tiny_config)
    assert voxels.coords.tolist() == [[0, 0, 32, 32]]
    assert features[0, :2].tolist() == [pytest.approx(row, abs=1e-6) for row in EXPECTED_11]


def test_backward_variant_drops_z_centre_offset(make_config) -> None:
    config = make_config(voxel_encoder={"with_voxel_center_z": False})
    features = decorate(two_point_pillar(), config)
    assert features.shape == (1, 32, 10)
    assert features[0, :2].tolist() == [pytest.approx(row[:10], abs=1e-6) for row in EXPECTED_11]


def test_distance_is_appended_last(make_config) -> None:
    config = make_config(voxel_encoder={"with_distance": True})
    features = decorate(two_point_pillar(), config)
    assert features.shape == (1, 32, 12)
    norms = [(0.01 + 0.04 + 1.0) ** 0.5, (0.09 + 0.0025 + 1.0) ** 0.5]
    assert features[0, :2, 11].tolist() == pytest.approx(norms, abs=1e-6)
    assert features[0, :2, :11].tolist() == [pytest.approx(row, abs=1e-6) for row in EXPECTED_11]


def test_legacy_overwrites_xyz_with_centre_offsets(make_config) -> None:
    config = make_config(voxel_encoder={"legacy": True})
    features = decorate(two_point_pillar(), config)
    centre_offsets = [row[8:11] for row in EXPECTED_11]
    expected = [offset + row[3:] for offset, row in zip(centre_offsets, EXPECTED_11)]
    assert features[0, :2].tolist() == [pytest.approx(row, abs=1e-6) for row in expected]


def test_cluster_mean_divides_the_slot_sum_by_num_points(tiny_config) -> None:
    # num_points says 1 although slot 1 holds data: mmdet3d sums all 32 slots (so x̄ = 0.4)
    # and then zeroes slot 1 by the mask.
    pillar = two_point_pillar()
    pillar.num_points = torch.tensor([1], dtype=torch.int32)
    features = decorate(pillar, tiny_config)
    assert features[0, 0, 5].item() == pytest.approx(0.1 - 0.4, abs=1e-6)
    assert features[0, 1].abs().sum() == 0
