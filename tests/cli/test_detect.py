"""``centerpoint-deploy detect``: JSON output and argument errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import centerpoint_deploy

from centerpoint_deploy.cli.app import app
from centerpoint_deploy.data.pointcloud import write_points_bin
from centerpoint_deploy.errors import BackendError, PointCloudError

runner = CliRunner()


@pytest.fixture()
def cloud_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.uniform(-12, 12, (500, 2)), rng.uniform(-2, 2, (500, 1)),
                             rng.uniform(0, 255, (500, 1)), np.full((500, 1), 0.7)], axis=1)
    path = tmp_path / "0.pcd.bin"
    write_points_bin(path, points)
    return path


@pytest.fixture()
def busy_config(tmp_path: Path) -> Path:
    """The tiny preset with heatmap bias 0: a random model then scores cells near 0.5, not 0.01."""
    data = yaml.safe_load((Path(centerpoint_deploy.__file__).parent / "config/presets/tiny.yaml").read_text())
    data["head"]["init_bias"] = 0.0
    path = tmp_path / "busy.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_random_weights_writes_records_per_file(cloud_file: Path, busy_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "boxes.json"
    copy = shutil.copy(cloud_file, tmp_path / "1.pcd.bin")
    result = runner.invoke(app, ["detect", str(cloud_file), str(copy), "--config", str(busy_config),
                                 "--random-weights", "--format", "records", "--output", str(out)])
    assert result.exit_code == 0, result.output
    boxes = json.loads(out.read_text())
    assert list(boxes) == [str(cloud_file), str(copy)]
    assert boxes[str(copy)] == boxes[str(cloud_file)]
    records = boxes[str(cloud_file)]
    assert 0 < len(records) <= 50  # nms.post_max_size of the tiny preset
    assert all(len(r["box"]) == 9 and 0.1 < r["score"] <= 1 and r["label"] in
               ("car", "truck", "bus", "bicycle", "pedestrian") for r in records)
    assert [r["score"] for r in records] == sorted((r["score"] for r in records), reverse=True)
    again = runner.invoke(app, ["detect", str(cloud_file), "-c", str(busy_config), "--random-weights", "--format", "records"])
    assert json.loads(again.stdout) == {str(cloud_file): records}  # seeded, reproducible; stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "no weights: pass --checkpoint PATH \\(or --random-weights"),
        (["--random-weights", "--checkpoint", "x.pth"], "either --checkpoint or --random-weights, not both"),
        (["--backend", "onnxruntime", "--random-weights"], "are for the pytorch backend"),
        (["--backend", "bogus", "--deploy-dir", "d"], "unknown backend 'bogus'"),
    ],
)
def test_weight_and_backend_errors(cloud_file: Path, extra: list[str], message: str) -> None:
    result = runner.invoke(app, ["detect", str(cloud_file), "--config", "tiny", *extra])
    assert isinstance(result.exception, BackendError)
    assert re.search(message, str(result.exception))


def test_truncated_file_is_a_point_cloud_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.bin"
    path.write_bytes(b"\0" * 12)
    result = runner.invoke(app, ["detect", str(path), "--config", "tiny", "--random-weights"])
    assert isinstance(result.exception, PointCloudError)
    assert "12 bytes" in str(result.exception)
