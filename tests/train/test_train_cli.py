"""``centerpoint-deploy train`` end to end on a small synthetic T4 scene (tiny preset, CPU)."""

from __future__ import annotations

from pathlib import Path

import torch
from typer.testing import CliRunner

from centerpoint_deploy.cli.app import app
from centerpoint_deploy.data.synthetic import LidarConfig, generate_dataset


def test_train_command_writes_checkpoint(tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate_dataset(data, num_scenes=1, frames_per_scene=2, seed=0,
                     sensor=LidarConfig(beams=16, columns=360, max_range=30.0))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "train", "--config", "tiny", "--dataset", str(data), "--val-dataset", str(data), "--out", str(out),
        "--epochs", "1", "--batch-size", "2", "--device", "cpu", "--workers", "0", "--log-every", "1",
    ])
    assert result.exit_code == 0, result.output
    assert "val_loss=" in result.output
    saved = torch.load(out / "checkpoint.pth", map_location="cpu", weights_only=False)
    assert saved["meta"]["iter"] == 1 and saved["meta"]["dataset"] == str(data)
    assert any(k.startswith("pts_bbox_head.") for k in saved["state_dict"])


def test_train_command_rejects_bad_amp_dtype(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--config", "tiny", "--dataset", str(tmp_path), "--out",
                                      str(tmp_path / "run"), "--amp", "--amp-dtype", "fp8"])
    assert result.exit_code != 0 and "fp8" in str(result.exception)
