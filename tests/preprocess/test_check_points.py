"""Validation of the point tensors handed to the pipeline."""

from __future__ import annotations

import pytest
import torch

from centerpoint_deploy.errors import PointCloudError
from centerpoint_deploy.preprocess import check_points


@pytest.mark.parametrize(
    ("clouds", "message"),
    [
        ([torch.zeros(3, 4)], r"point cloud 0 has shape \[3, 4\], expected \[N, 5\]"),
        ([torch.zeros(3, 5), torch.zeros(5)], r"point cloud 1 has shape \[5\], expected \[N, 5\]"),
        ([torch.zeros(3, 5, dtype=torch.float64)], "dtype torch.float64, expected torch.float32"),
        ([torch.zeros(0, 5)], "point cloud 0 is empty"),
        ([torch.tensor([[0.0, 0, 0, 0, 0], [float("nan"), 0, 0, 0, 0], [0, 0, float("-inf"), 0, 0]])],
         "point cloud 0: 2 of 3 points hold NaN or inf values"),
        ([], "non-empty list"),
        ([[1.0, 2.0]], "is a list, expected a torch.Tensor"),
    ],
)
def test_bad_points_raise(tiny_config, clouds, message: str) -> None:
    with pytest.raises(PointCloudError, match=message):
        check_points(clouds, tiny_config)


def test_good_points_pass(tiny_config) -> None:
    check_points([torch.zeros(3, 5), torch.ones(1, 5)], tiny_config)
