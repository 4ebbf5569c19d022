"""Resolving the job's inputs: frame subsets, class ranges, checkpoint, device, output folder."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import torch

from centerpoint_deploy.config import load_config
from centerpoint_deploy.errors import BackendUnavailableError, CheckpointError, ConfigError
from centerpoint_deploy.job.inputs import (job_checkpoint, job_device, job_metric_config, job_out_dir, model_reach,
                                           spread_indices, spread_subset)
from centerpoint_deploy.job.inputs import job_tensorrt


def test_spread_indices() -> None:
    assert spread_indices(20, 3) == [0, 10, 19]  # rint(linspace(0, 19, 3)) = rint([0, 9.5, 19])
    assert spread_indices(10, 4) == [0, 3, 6, 9]
    assert spread_indices(5, 1) == [0]
    assert spread_indices(5, None) == spread_indices(5, 5) == spread_indices(5, 9) == [0, 1, 2, 3, 4]
    assert spread_subset([4, 8, 12, 16], 2) == [4, 16]
    assert spread_subset([4, 8, 12, 16], 0) == []


def test_class_range_follows_the_grid() -> None:
    demo, tiny, j6gen2 = load_config("demo"), load_config("tiny"), load_config("j6gen2_base")
    assert (model_reach(demo), model_reach(tiny)) == (51.2, 12.8)
    metric = job_metric_config("t4", None, demo)  # T4: 121 m, beyond the ±51.2 m grid -> 50 m
    assert metric.class_range == {name: 50.0 for name in demo.class_names}
    assert metric.distance_buckets == ((0.0, 50.0),)
    assert set(job_metric_config("t4", None, tiny).class_range.values()) == {10.0}
    assert job_metric_config("t4", None, tiny).distance_buckets == ()
    awml = job_metric_config("t4", None, j6gen2)  # 121 m fits the ±121.6 m grid: AWML's own setting
    assert set(awml.class_range.values()) == {121.0} and len(awml.distance_buckets) == 4
    nuscenes = job_metric_config("nuscenes", None, demo)  # 50 / 40 m fit 51.2 m; only the model's classes
    assert nuscenes.class_range == {"car": 50, "truck": 50, "bus": 50, "bicycle": 40, "pedestrian": 40}
    assert set(job_metric_config("t4", 30, demo).class_range.values()) == {30.0}
    assert job_metric_config("t4", 30, demo).distance_buckets == ()


def test_checkpoint_resolution(tmp_path: Path) -> None:
    existing = tmp_path / "model.pth"
    existing.write_bytes(b"x")
    assert job_checkpoint(existing, "tiny") == existing
    with pytest.raises(CheckpointError, match="missing.pth does not exist"):
        job_checkpoint(tmp_path / "missing.pth", "demo")
    with pytest.raises(ConfigError, match="config 'tiny' needs a checkpoint"):
        job_checkpoint(None, "tiny")
    with pytest.raises(CheckpointError, match="demo checkpoint .*absent.pth is not installed; pass --checkpoint"):
        job_checkpoint(None, "demo", demo_checkpoint=tmp_path / "absent.pth")
    assert job_checkpoint(None, "demo", demo_checkpoint=existing) == existing


def test_device_and_out_dir() -> None:
    assert job_device("cpu") == torch.device("cpu")
    assert job_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailableError):
            job_device("cuda")
    assert job_out_dir(Path("x")) == Path("x")
    assert job_out_dir(None, datetime.datetime(2024, 1, 2, 3, 4, 5)) == Path("outputs/deploy-20240102-030405")


def test_tensorrt_decision_on_cpu() -> None:
    cpu = torch.device("cpu")
    assert job_tensorrt(False, cpu) == (False, "disabled (export.tensorrt: false)")
    assert job_tensorrt(None, cpu) == (False, "the device is cpu (TensorRT engines need CUDA)")
    with pytest.raises(ConfigError, match="'export.tensorrt' = True needs a CUDA device"):
        job_tensorrt(True, cpu)
