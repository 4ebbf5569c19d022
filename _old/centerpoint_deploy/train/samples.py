"""Frames -> augmented training samples, and the DataLoader that batches them.

A sample is ``(points, boxes, labels)``: ``points (Tensor[N, len(use_dim)])`` float32 in the
columns the model reads, ``boxes (Tensor[M, 9])`` float32, ``labels (Tensor[M])`` int64.
Point clouds differ in size, so a batch is three lists, not stacked tensors; voxelization
happens later, on the training device.

Augmentation is seeded by ``(seed, epoch, frame index)``: the same run gives the same
samples whatever the number of worker processes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.data.frame import Frame
from centerpoint_deploy.errors import DatasetError
from centerpoint_deploy.train.augment import augment_scene
from centerpoint_deploy.train.config import AugmentConfig

Sample = tuple[Tensor, Tensor, Tensor]
Batch = tuple[list[Tensor], list[Tensor], list[Tensor]]


class TrainingSamples(Dataset):
    """Annotated frames as augmented ``(points, boxes, labels)`` samples.

    Args:
        frames: the dataset; every frame needs ground truth labelled with
            ``config.class_names``.
        config: model configuration (``points.use_dim``, ``class_names``).
        augment: augmentation ranges (:meth:`AugmentConfig.disabled` for none).
        seed: base seed of the augmentation.
        min_points_in_box: boxes with fewer ``num_lidar_pts`` are left out (0 keeps all).

    Set :attr:`epoch` before each pass so every epoch draws new augmentations.
    """

    def __init__(self, frames: Sequence[Frame], config: ModelConfig, augment: AugmentConfig, seed: int,
                 min_points_in_box: int = 0) -> None:
        if len(frames) == 0:
            raise DatasetError("the dataset holds no frames; training and validation need at least one")
        self.frames = frames
        self.config = config
        self.augment = augment
        self.seed = seed
        self.min_points_in_box = min_points_in_box
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> Sample:
        frame = self.frames[index]
        if frame.gt is None:
            raise DatasetError(f"frame {frame.token!r} ({frame.scene}) has no annotations; training needs ground truth")
        if tuple(frame.gt.class_names) != tuple(self.config.class_names):
            raise DatasetError(f"frame {frame.token!r} is labelled with classes {tuple(frame.gt.class_names)}, "
                               f"the model has {self.config.class_names}; open the dataset with the model's class_names")
        use_dim = list(self.config.points.use_dim)
        if frame.points.ndim != 2 or frame.points.shape[1] <= max(use_dim):
            raise DatasetError(f"frame {frame.token!r}: points have shape {list(frame.points.shape)}, "
                               f"need columns {use_dim}")
        gt = frame.gt.select(frame.gt.num_lidar_pts >= self.min_points_in_box)
        points = np.ascontiguousarray(frame.points[:, use_dim], dtype=np.float32)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        points, boxes = augment_scene(points, gt.boxes.astype(np.float32), self.augment, rng)
        return torch.from_numpy(points), torch.from_numpy(boxes), torch.from_numpy(gt.labels.astype(np.int64))


def collate_samples(samples: list[Sample]) -> Batch:
    """``[(points, boxes, labels), ...]`` -> ``([points...], [boxes...], [labels...])``."""
    points, boxes, labels = zip(*samples)
    return list(points), list(boxes), list(labels)


def make_loader(samples: TrainingSamples, batch_size: int, num_workers: int, shuffle: bool, seed: int,
                pin_memory: bool) -> DataLoader:
    """A DataLoader over ``samples`` with a seeded order (``shuffle``) and worker processes."""
    return DataLoader(samples, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      collate_fn=collate_samples, pin_memory=pin_memory,
                      generator=torch.Generator().manual_seed(seed))
