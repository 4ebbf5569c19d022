"""Datasets: point files, T4 scenes, info pickles, split files and a synthetic T4 world.

``open_dataset`` is the one entry point the other stages use::

    frames = open_dataset("data/t4/", class_names=config.class_names, sweeps_num=config.points.sweeps_num)
    frame = frames[0]            # Frame: points [N, 5] (column 4 = time lag), gt boxes [M, 9]

(:class:`~centerpoint_deploy.data.opening.DatasetOpening` opens one in child processes while the
caller goes on.) Opening a dataset imports no torch.
"""

from __future__ import annotations

from centerpoint_deploy.data.dataset import FrameDataset
from centerpoint_deploy.data.frame import Frame, GroundTruth
from centerpoint_deploy.data.opening import DatasetOpening, DatasetSpec, open_dataset, scene_dirs
from centerpoint_deploy.data.sweeps import SweepOptions

__all__ = ["DatasetOpening", "DatasetSpec", "Frame", "FrameDataset", "GroundTruth", "SweepOptions", "open_dataset",
           "scene_dirs"]
