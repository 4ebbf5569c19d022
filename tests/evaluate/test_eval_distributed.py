"""``torchrun`` evaluation: 2 gloo ranks give the single-process metrics exactly; a failing rank stops the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from centerpoint_deploy.cli.app import app
from centerpoint_deploy.config import load_config
from centerpoint_deploy.data.synthetic import LidarConfig, WorldConfig, generate_dataset
from centerpoint_deploy.evaluate.distributed import RankGroup

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    return generate_dataset(root, 1, 5, 0, LidarConfig(beams=16, columns=360, max_range=40.0), WorldConfig())[0]


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model, its random heatmap biased to ~0.5 and no score threshold: dozens of boxes a frame."""
    content = load_config("tiny").to_dict()
    content["name"] = "tiny-boxes"
    content["head"]["init_bias"] = 0.0
    content["decode"]["score_threshold"] = 0.0
    path = tmp_path_factory.mktemp("config") / "tiny-boxes.yaml"
    path.write_text(yaml.safe_dump(content))
    return path


def _metrics(path: Path) -> dict:
    """metrics.json without ``eval_time`` (the scoring's wall time, the one field that may differ)."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "eval_time"}
        return value
    return strip(json.loads(path.read_text()))


def _arguments(scene: Path, config: Path, out: Path) -> list[str]:
    return ["evaluate", "--dataset", str(scene), "--config", str(config), "--random-weights", "--out", str(out),
            "--no-plots", "--workers", "1"]


def _torchrun(scene: Path, config: Path, out: Path, ranks: int) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
                "-m", "centerpoint_deploy"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "CENTERPOINT_DIST_TIMEOUT": "60"}
    return subprocess.run(launcher + _arguments(scene, config, out), cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def test_two_gloo_ranks_match_one_process(scene: Path, config_file: Path, tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)              # as torchrun's ranks: CPU kernels may sum in another order on more threads
    try:
        single = CliRunner().invoke(app, _arguments(scene, config_file, tmp_path / "one"))   # in this process
    finally:
        torch.set_num_threads(threads)
    assert single.exit_code == 0, single.output
    double = _torchrun(scene, config_file, tmp_path / "two", 2)
    assert double.returncode == 0, double.stderr
    assert (tmp_path / "one" / "ground_truth.json").read_bytes() == (tmp_path / "two" / "ground_truth.json").read_bytes()
    one = json.loads((tmp_path / "one" / "pytorch" / "predictions.json").read_text())
    two = json.loads((tmp_path / "two" / "pytorch" / "predictions.json").read_text())
    assert one["results"] == two["results"] and len(two["results"]) == 5
    assert sum(len(boxes) for boxes in two["results"].values()) > 20
    metrics = _metrics(tmp_path / "two" / "pytorch" / "metrics.json")
    assert metrics == _metrics(tmp_path / "one" / "pytorch" / "metrics.json") and metrics["mean_ap"] >= 0
    throughput = json.loads((tmp_path / "two" / "comparison.json").read_text())["throughput"]
    assert throughput["ranks"] == 2 and [r["frames"] for r in throughput["per_rank"]] == [2, 3]
    assert double.stdout.count("detection metrics") == 1          # the summary is printed once, by rank 0


def test_a_failing_rank_stops_every_rank(scene: Path, config_file: Path, tmp_path: Path) -> None:
    bad = sorted((scene / "data" / "LIDAR_CONCAT").glob("*.bin"))[-1]   # the last frame: rank 1's share
    bad.write_bytes(b"\0" * 7)
    result = _torchrun(scene, config_file, tmp_path / "out", 2)
    assert result.returncode != 0
    assert "rank 1 failed: " in result.stderr and bad.name in result.stderr
    assert not (tmp_path / "out" / "comparison.json").exists()


def test_shards_are_contiguous_and_cover_everything() -> None:
    items = list(range(11))
    shards = [RankGroup(r, 4).shard(items) for r in range(4)]
    assert shards == [[0, 1], [2, 3, 4], [5, 6, 7], [8, 9, 10]]
    assert RankGroup().shard(items) == items
    assert RankGroup(1, 2, 1).device("cpu") == torch.device("cpu")
    assert RankGroup().device("cuda:0") == torch.device("cuda:0")


class _Store:
    """The part of torch.distributed.Store the ranks use."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}

    def set(self, key: str, value: str) -> None:
        self.values[key] = value.encode()

    def check(self, keys: list[str]) -> bool:
        return all(k in self.values for k in keys)

    def get(self, key: str) -> bytes:
        return self.values[key]


def test_a_posted_failure_stops_the_other_ranks_between_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    from centerpoint_deploy.errors import DatasetError
    from centerpoint_deploy.evaluate import distributed

    monkeypatch.setattr(distributed, "CHECK_INTERVAL_S", 0.0)
    store = _Store()
    healthy, failing = RankGroup(0, 2, 0, store), RankGroup(1, 2, 1, store)
    healthy.check()                                            # nothing posted: carries on
    failing.fail(DatasetError("frame 7: truncated"))           # posts, then (no process group here) gives up
    with pytest.raises(distributed.RankFailedError, match="rank 1 failed: frame 7: truncated"):
        healthy.check()
