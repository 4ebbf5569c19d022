"""Scatter of pillar features onto the NCHW BEV canvas (rows = y, columns = x)."""

from __future__ import annotations

import pytest
import torch

from centerpoint_deploy.errors import PointCloudError
from centerpoint_deploy.preprocess.scatter import BevCanvas, scatter_to_bev


def test_rows_are_y_columns_are_x_per_batch_item() -> None:
    features = torch.tensor([[[1.0, 2.0]], [[3.0, 4.0]], [[5.0, 6.0]]])  # [V=3, 1, C=2]
    coords = torch.tensor([[0, 0, 1, 3], [1, 0, 2, 0], [0, 0, 0, 0]], dtype=torch.int32)  # (b, z, y, x)
    bev = scatter_to_bev(features, coords, batch_size=2, bev_shape=(3, 4))
    assert bev.shape == (2, 2, 3, 4)
    assert bev[0, :, 1, 3].tolist() == [1.0, 2.0]
    assert bev[1, :, 2, 0].tolist() == [3.0, 4.0]
    assert bev[0, :, 0, 0].tolist() == [5.0, 6.0]
    assert bev.abs().sum().item() == 21.0  # nothing else written
    assert bev.is_contiguous()
    last = scatter_to_bev(features, coords, batch_size=2, bev_shape=(3, 4), channels_last=True)
    assert torch.equal(last, bev) and last.is_contiguous(memory_format=torch.channels_last)


def test_padding_rows_are_skipped_and_gradients_reach_the_pillars() -> None:
    features = torch.tensor([[1.0, 2.0], [9.0, 9.0], [3.0, 4.0]], requires_grad=True)
    coords = torch.tensor([[0, 0, 0, 1], [-1, -1, -1, -1], [0, 0, 1, 0]])
    bev = scatter_to_bev(features, coords, 1, (2, 2), check_coords=False)
    assert bev[0, :, 0, 1].tolist() == [1.0, 2.0] and bev[0, :, 1, 0].tolist() == [3.0, 4.0]
    assert bev.abs().sum().item() == 10.0
    (bev * torch.arange(8.0).view(1, 2, 2, 2)).sum().backward()
    assert features.grad.tolist() == [[1.0, 5.0], [0.0, 0.0], [2.0, 6.0]]


def test_accepts_two_dimensional_features() -> None:
    bev = scatter_to_bev(torch.tensor([[7.0]]), torch.tensor([[0, 0, 2, 1]]), 1, (3, 2))
    assert bev[0, 0].tolist() == [[0.0, 0.0], [0.0, 0.0], [0.0, 7.0]]


@pytest.mark.parametrize("coords", [[[0, 0, 3, 0]], [[0, 0, 0, 2]], [[1, 0, 0, 0]], [[0, 0, -1, 0]]])
def test_coords_outside_the_canvas_raise(coords: list[list[int]]) -> None:
    with pytest.raises(PointCloudError, match="outside batch_size=1, bev_shape=\\(3, 2\\)"):
        scatter_to_bev(torch.ones(1, 4), torch.tensor(coords), 1, (3, 2))


def test_mismatched_counts_raise() -> None:
    with pytest.raises(PointCloudError, match=r"coords must be \[V=2, 4\], got \[1, 4\]"):
        scatter_to_bev(torch.ones(2, 4), torch.zeros(1, 4, dtype=torch.int32), 1, (3, 2))


def _frame(seed: int, batch: int = 2, shape: tuple[int, int] = (5, 6), pillars: int = 12,
           padding: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """``pillars`` distinct cells over ``batch`` canvases and ``padding`` rows of batch index -1."""
    generator = torch.Generator().manual_seed(seed)
    cells = torch.randperm(batch * shape[0] * shape[1], generator=generator)[:pillars]
    coords = torch.stack([cells // (shape[0] * shape[1]), torch.zeros_like(cells),
                          cells // shape[1] % shape[0], cells % shape[1]], dim=1)
    coords = torch.cat([coords, torch.full((padding, 4), -1)])
    return torch.randn(pillars + padding, 3, generator=generator), coords


def test_a_kept_canvas_equals_a_fresh_one_frame_after_frame() -> None:
    canvas = BevCanvas(2, (5, 6))
    for seed in range(3):  # each frame's cells differ: the last frame's must be cleared
        features, coords = _frame(seed)
        kept = canvas.scatter(features, coords)
        fresh = scatter_to_bev(features, coords, 2, (5, 6), channels_last=True)
        assert torch.equal(kept, fresh) and kept.is_contiguous(memory_format=torch.channels_last)
    features, coords = _frame(7, pillars=20)  # another pillar count: a new canvas
    assert torch.equal(canvas.scatter(features, coords), scatter_to_bev(features, coords, 2, (5, 6)))
