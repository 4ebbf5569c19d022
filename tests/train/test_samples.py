"""Training samples: column selection, box filtering, seeded per-epoch augmentation, collation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.data.frame import Frame, GroundTruth
from centerpoint_deploy.errors import DatasetError
from centerpoint_deploy.train.config import AugmentConfig
from centerpoint_deploy.train.samples import TrainingSamples, collate_samples

CLASSES = ("car", "truck", "bus", "bicycle", "pedestrian")


def frame_with(num_points: int, points_in_boxes: list[int], width: int = 6) -> Frame:
    """Points whose column c holds c + row / 1000; one 1 m box per entry of ``points_in_boxes``."""
    points = (np.arange(width)[None, :] + np.arange(num_points)[:, None] / 1000).astype(np.float32)
    m = len(points_in_boxes)
    boxes = np.tile(np.array([[1, 2, 0, 1, 1, 1, 0, 0, 0]], np.float32), (m, 1))
    boxes[:, 0] = np.arange(m)
    gt = GroundTruth(boxes, np.arange(m, dtype=np.int64) % 5, CLASSES, np.array(points_in_boxes), [""] * m, [""] * m)
    return Frame("t", "s", 0, "", points, gt)


def test_columns_and_min_points(tiny_config: ModelConfig) -> None:
    samples = TrainingSamples([frame_with(7, [0, 3, 1])], tiny_config, AugmentConfig.disabled(), seed=0,
                              min_points_in_box=1)
    points, boxes, labels = samples[0]
    assert points.dtype == torch.float32 and points.shape == (7, 5)
    assert points[2].tolist() == pytest.approx([0.002, 1.002, 2.002, 3.002, 4.002])  # use_dim 0..4 of 6 columns
    assert boxes[:, 0].tolist() == [1.0, 2.0] and labels.tolist() == [1, 2]  # the 0-point box is dropped


def test_augmentation_is_seeded_per_epoch(tiny_config: ModelConfig) -> None:
    samples = TrainingSamples([frame_with(50, [5, 5])], tiny_config, AugmentConfig(), seed=4)
    first = samples[0]
    assert all(torch.equal(a, b) for a, b in zip(first, samples[0]))
    samples.epoch = 1
    assert not torch.equal(first[1], samples[0][1])


def test_collate_keeps_clouds_apart(tiny_config: ModelConfig) -> None:
    samples = TrainingSamples([frame_with(3, [1]), frame_with(5, [1, 1])], tiny_config, AugmentConfig.disabled(), 0)
    points, boxes, labels = collate_samples([samples[0], samples[1]])
    assert [len(p) for p in points] == [3, 5] and [len(b) for b in boxes] == [1, 2] and len(labels) == 2


def test_too_few_columns_raise(tiny_config: ModelConfig) -> None:
    samples = TrainingSamples([frame_with(3, [1], width=4)], tiny_config, AugmentConfig.disabled(), 0)
    with pytest.raises(DatasetError, match=r"need columns \[0, 1, 2, 3, 4\]"):
        samples[0]
