"""Small synthetic T4 datasets shared by the data tests (16 beams x 360 columns: fast)."""

from __future__ import annotations

from pathlib import Path

import pytest

from centerpoint_deploy.data.synthetic import LidarConfig, WorldConfig, generate_dataset

CLASSES = ("car", "truck", "bus", "bicycle", "pedestrian")
SMALL_SENSOR = LidarConfig(beams=16, columns=360, mount_yaw_deg=3.0)
SEED = 11
FRAMES = 4
INTERVAL = 2  # one non-key sweep between key frames


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two scenes x 4 key frames, non-key sweeps in between, a yawed sensor mount."""
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, 2, FRAMES, SEED, SMALL_SENSOR, WorldConfig(), key_frame_interval=INTERVAL)
    return root
