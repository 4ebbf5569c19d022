"""``verify.report``: what the terminal shows is the text the checks produced, brackets included."""

from __future__ import annotations

import io

from rich.console import Console

from centerpoint_deploy.verify.boxes import BoxTolerance
from centerpoint_deploy.verify.compare import Tolerance, Tolerances
from centerpoint_deploy.verify.report import print_report
from centerpoint_deploy.verify.run import BackendResult, VerificationReport


def test_failure_lines_keep_bracketed_text() -> None:
    result = BackendResult("onnxruntime", "ort[cpu]", "ort[cpu]", False,
                           errors=["frame 0: engine refused shape [1, 32, 320, 320] ([bold]x[/])"])
    report = VerificationReport("torch[cpu]", "cpu", Tolerances(Tolerance(1e-4, 1e-3)), BoxTolerance(), {},
                                {"onnxruntime": result})
    out = io.StringIO()
    print_report(report, Console(file=out, width=200, force_terminal=False))
    text = out.getvalue()
    assert "engine refused shape [1, 32, 320, 320] ([bold]x[/])" in text
    assert "torch[cpu]" in text and "onnxruntime (ort[cpu]" in text and "VERIFICATION FAILED" in text
