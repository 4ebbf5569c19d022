"""The command line as a whole: fast start, one ``error:`` line for every bad input, text printed as written."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from centerpoint_deploy.cli.app import app, run
from centerpoint_deploy.data.pointcloud import write_points_bin
from centerpoint_deploy.errors import ConfigError

HEAVY = ("torch", "onnx", "onnxruntime", "matplotlib")


def _commands() -> list[list[str]]:
    import typer.main

    group = typer.main.get_command(app)
    paths = []
    for name, command in group.commands.items():
        paths.append([name])
        paths += [[name, sub] for sub in getattr(command, "commands", {})]
    return paths


def test_every_help_runs_without_heavy_imports() -> None:
    """``import centerpoint_deploy.cli.app`` and every ``<command> --help`` load no torch/onnx/matplotlib."""
    script = ("import sys\nfrom centerpoint_deploy.cli.app import run\n"
              f"for args in {[[], *_commands()]!r}:\n"
              "    assert run([*args, '--help']) == 0, args\n"
              f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout[-2000:]


def _one_error(capsys: pytest.CaptureFixture[str], status: int) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert status == 1 and lines and lines[0].startswith("error: "), captured.err
    assert not any(line.startswith("error") for line in lines[1:]), captured.err
    return lines[0]


@pytest.mark.parametrize(("args", "expected"), [
    (["verify", "--frames", "-1"], "invalid value for '--frames': -1 is not >= 1"),
    (["benchmark", "-c", "tiny", "-n", "0"], "'--iterations' / '-n': 0 is not >= 1"),
    (["detect", "x.bin", "-c", "tiny", "--load-dim", "2"], "'--load-dim': 2 is not >= 3"),
    (["export", "-c", "tiny", "-o", "d", "--atol", "0"], "'--atol': 0 is not > 0"),
    (["evaluate", "--nosuch"], "no such option: --nosuch"),
    (["detect", "x.bin"], "missing option '--config'"),
])
def test_bad_command_line_is_one_error_line(capsys: pytest.CaptureFixture[str], args: list[str],
                                            expected: str) -> None:
    line = _one_error(capsys, run(args))
    assert expected in line and line.endswith("--help'")


def test_error_line_comes_before_warnings(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    def warn_then_fail(_text: str) -> None:
        warnings.warn("something looks odd [here]", UserWarning)
        raise ConfigError("bad value [x, y]")

    monkeypatch.setattr("centerpoint_deploy.cli.detect.resolve_device", warn_then_fail)
    status = run(["detect", str(tmp_path / "x.bin"), "-c", "tiny", "--random-weights"])
    assert _one_error(capsys, status) == "error: bad value [x, y]"  # markup-looking text printed as written


def test_unknown_backend_lists_the_backends(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = _one_error(capsys, run(["detect", str(tmp_path / "x.bin"), "-c", "tiny", "--backend", "tflite"]))
    assert "unknown backend 'tflite'; supported: pytorch, onnxruntime, tensorrt" in line


def test_help_prints_bracketed_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["detect", "--help"]) == 0
    assert "Boxes are [x, y, z, l, w, h, yaw, vx, vy] in the LiDAR frame" in " ".join(capsys.readouterr().out.split())
    assert run(["build-engine", "--help"]) == 0
    assert "min = opt = max = [max_voxels, 32, F]" in " ".join(capsys.readouterr().out.split())


@pytest.fixture()
def cloud(tmp_path: Path) -> Path:
    path = tmp_path / "0.pcd.bin"
    write_points_bin(path, np.zeros((10, 5)))
    return path


def _out_cases(tmp: Path, cloud: Path) -> dict[str, list[str]]:
    """Each command that writes, with ``{OUT}`` where its output location goes."""
    return {
        "evaluate": ["evaluate", "--dataset", str(tmp / "nowhere"), "-c", "tiny", "--random-weights", "-o", "{OUT}"],
        "verify": ["verify", "--deploy-dir", str(tmp / "nowhere"), "-c", "tiny", "--points", str(cloud), "-o", "{OUT}"],
        "export": ["export", "-c", "tiny", "--random-weights", "-o", "{OUT}"],
        "deploy": ["deploy", "-c", "tiny", "-o", "{OUT}"],
        "synth": ["synth", "{OUT}", "--scenes", "1", "--frames", "1"],
        "score": ["score", "-p", str(tmp / "p.json"), "-g", str(tmp / "g.json"), "-o", "{OUT}"],
        "benchmark": ["benchmark", "-c", "tiny", "-o", "{OUT}"],
        "train": ["train", "--config", "tiny", "--dataset", str(tmp / "nowhere"), "--out", "{OUT}"],
        "detect": ["detect", str(cloud), "-c", "tiny", "--random-weights", "-o", "{OUT}"],
        "config show": ["config", "show", "tiny", "-o", "{OUT}"],
    }


@pytest.mark.parametrize("command", list(_out_cases(Path(), Path())))
def test_unusable_output_is_refused_before_any_work(command: str, tmp_path: Path, cloud: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    file_writer = command in ("detect", "config show")
    target = tmp_path if file_writer else blocker  # a folder where a file belongs, a file where a folder does
    args = [str(target) if a == "{OUT}" else a for a in _out_cases(tmp_path, cloud)[command]]
    line = _one_error(capsys, run(args))
    assert ("is a folder" if file_writer else "is an existing file, not a folder") in line
    nested = [str(blocker / "sub") if a == "{OUT}" else a for a in _out_cases(tmp_path, cloud)[command]]
    expected = "is an existing file, not a folder" if file_writer else "cannot create the folder"
    assert expected in _one_error(capsys, run(nested))


@pytest.mark.parametrize("kind", ["missing", "folder"])
def test_verify_checkpoint_must_be_a_file(kind: str, tmp_path: Path, cloud: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = tmp_path / "ckpt.pth"
    if kind == "folder":
        checkpoint.mkdir()
    line = _one_error(capsys, run(["verify", "--deploy-dir", str(tmp_path), "-c", "tiny", "--checkpoint",
                                   str(checkpoint), "--points", str(cloud), "-o", str(tmp_path / "out")]))
    assert ("is a folder" if kind == "folder" else "does not exist") in line


def test_unknown_tolerance_and_precision_are_refused(tmp_path: Path, cloud: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    base = ["verify", "--deploy-dir", str(tmp_path), "-c", "tiny", "--points", str(cloud), "-o", str(tmp_path / "out"),
            "--checkpoint", str(cloud)]  # any file: both are refused before it is read
    assert "--precision 'int4' is unknown; allowed: fp32, fp16, bf16, int8" in _one_error(capsys, run([*base, "--precision",
                                                                                                "int4"]))
    line = _one_error(capsys, run([*base, "--tol", "nosuch=1,1"]))
    assert "--tol names ['nosuch'] are not outputs of this model; known: pillar_features, heatmap" in line
    line = _one_error(capsys, run(["export", "-c", "tiny", "--random-weights", "-o", str(tmp_path / "d"),
                                   "--precision", "int4"]))
    assert "--precision 'int4' is not one of" in line and not (tmp_path / "d").exists()


def test_synth_names_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["synth", str(tmp_path), "--scenes", "1", "--frames", "1", "--beams", "4", "--columns", "16"]
    assert run(args) == 0
    capsys.readouterr()
    assert "(CLI: --overwrite" in _one_error(capsys, run(args))
    assert run([*args, "--overwrite"]) == 0


def test_device_and_checkpoint_defaults_follow_one_rule(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from centerpoint_deploy.cli.common import resolve_checkpoint, resolve_device
    from centerpoint_deploy.job.inputs import DEMO_CHECKPOINT

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")  # train, detect, ... on a CPU machine
    assert resolve_checkpoint(None, "demo", False, needed=True) == DEMO_CHECKPOINT  # as deploy does
    assert resolve_checkpoint(None, "tiny", True, needed=True) is None
    for command in ("train", "detect", "evaluate", "verify", "export", "benchmark"):
        assert run([command, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())
        assert "auto (cuda when available, else cpu)" in text and "[default: auto]" in text, command
