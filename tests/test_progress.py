"""``progress`` callbacks and the rich bars that draw them."""

from __future__ import annotations

import io

import torch
from rich.console import Console

from centerpoint_deploy.config import load_config
from centerpoint_deploy.export.onnx_export import export_onnx
from centerpoint_deploy.model import build_model
from centerpoint_deploy.progress import track
from centerpoint_deploy.terminal import progress_bars


def test_track_reports_start_and_each_item() -> None:
    calls = []
    assert list(track("abc", "letters", lambda *call: calls.append(call))) == ["a", "b", "c"]
    assert calls == [("letters", 0, 3), ("letters", 1, 3), ("letters", 2, 3), ("letters", 3, 3)]
    assert list(track(iter([1, 2]), "unsized", None)) == [1, 2]  # no callback: plain iteration


def test_progress_bars_draw_step_counts_and_eta() -> None:
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=False)
    with progress_bars(console) as progress:
        for done in range(4):
            progress("verify [frames]", done, 3)  # markup-looking names are printed as written
    text = out.getvalue()
    assert "verify [frames]" in text and "3/3" in text and "eta" in text


def test_export_reports_its_phases(tmp_path) -> None:
    config = load_config("tiny")
    torch.manual_seed(0)
    calls = []
    export_onnx(build_model(config), config, tmp_path, progress=lambda *call: calls.append(call))
    assert calls == [("export", done, 5) for done in range(6)]
