"""Cross-backend verification: tensor and box comparison, per-stage runs, bisection, reports.

Main entry points: :func:`verify_backends` (``run.py``), :func:`bisect_head` /
:func:`bisect_encoder` (``bisect.py``), :func:`compare_tensors` (``compare.py``),
:func:`compare_boxes` (``boxes.py``), :func:`print_report` / :func:`write_reports` (``report.py``).
"""

from centerpoint_deploy.verify.bisect import BisectionReport, bisect_encoder, bisect_head
from centerpoint_deploy.verify.boxes import DEFAULT_BOX_TOLERANCES, BoxComparison, BoxTolerance, compare_boxes
from centerpoint_deploy.verify.compare import (
    DEFAULT_TOLERANCES, TensorComparison, Tolerance, Tolerances, compare_tensors, default_tolerances)
from centerpoint_deploy.verify.report import print_report, write_reports
from centerpoint_deploy.numerics import reproducible
from centerpoint_deploy.verify.run import VerificationReport, verify_backends

__all__ = [
    "DEFAULT_BOX_TOLERANCES", "DEFAULT_TOLERANCES", "BisectionReport", "BoxComparison", "BoxTolerance",
    "TensorComparison", "Tolerance", "Tolerances", "VerificationReport", "bisect_encoder", "bisect_head",
    "compare_boxes", "compare_tensors", "default_tolerances", "print_report", "reproducible", "verify_backends",
    "write_reports",
]
