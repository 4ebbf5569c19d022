"""Turn the checked fp32 graphs of a deploy directory into the asked precision, in place.

:func:`reduce_precision` reads each fp32 graph, makes its fp16 or INT8 version from the
calibration inputs, writes it over the fp32 file (temp name, then ``os.replace``) and returns
the :class:`~.plan.PrecisionPlan`. The fp32 graphs have passed the export's PyTorch check
before; the reduced graphs are measured against them (output SNR on the check frames).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx

from centerpoint_deploy import contract
from centerpoint_deploy.errors import ExportError
from centerpoint_deploy.export.precision import PRECISIONS
from centerpoint_deploy.export.precision.calibration import CalibrationSet
from centerpoint_deploy.export.precision.fp16 import to_fp16
from centerpoint_deploy.export.precision.int8 import calibrate, check_method
from centerpoint_deploy.export.precision.plan import PartPlan, PrecisionPlan
from centerpoint_deploy.export.precision.sensitivity import (choose_int8, output_snr, run_graph, scan_groups,
                                                               weighted_nodes)

_FILES = {"encoder": contract.ENCODER_FILE, "head": contract.HEAD_FILE}


@dataclass(frozen=True)
class Int8Options:
    """How INT8 graphs are made.

    Attributes:
        method: calibration method (:data:`~.int8.CALIBRATION_METHODS`).
        snr_budget_db: smallest acceptable SNR (dB) of every graph output against fp32.
        check_frames: calibration frames the sensitivity scan and the SNR are measured on.
        exclude_groups: layer groups kept out of INT8 whatever the scan says.
    """

    method: str = "percentile"
    snr_budget_db: float = 30.0
    check_frames: int = 8
    exclude_groups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_method(self.method)
        if not self.check_frames >= 1:
            raise ExportError(f"check_frames = {self.check_frames} must be >= 1")


def _save(graph: onnx.ModelProto, target: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", dir=target.parent)
    os.close(fd)
    try:
        onnx.save(graph, tmp)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def reduce_precision(deploy_dir: Path, precision: str, calibration: CalibrationSet | None,
                     int8: Int8Options = Int8Options()) -> PrecisionPlan:
    """Convert both graphs of ``deploy_dir`` to ``precision`` in place; the plan of what was done.

    Raises:
        ExportError: an unknown precision, fp16/int8 without calibration inputs, or a failure.
    """
    if precision not in PRECISIONS:
        raise ExportError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return PrecisionPlan("fp32", parts=tuple(PartPlan(part) for part in _FILES))
    if calibration is None or not len(calibration):
        raise ExportError(f"a {precision} export needs calibration frames from a dataset")
    parts = []
    with tempfile.TemporaryDirectory(prefix="cp-precision.") as tmp:
        for part, name in _FILES.items():
            target = deploy_dir / name
            fp32_path = Path(tmp) / name
            shutil.copyfile(target, fp32_path)
            fp32 = onnx.load(str(fp32_path))
            feeds = calibration.feeds(part)
            check = feeds[: int8.check_frames]
            reference = run_graph(fp32, check)
            if precision == "fp16":
                converted = to_fp16(fp32, feeds)
                graph = converted.graph
                plan = PartPlan(part, float_nodes=tuple(n for n in converted.kept_fp32 if n in weighted_nodes(fp32)),
                                peaks=converted.peaks)
            else:
                ranges = calibrate(fp32_path, feeds, int8.method)
                sensitivity = scan_groups(fp32_path, ranges, check, reference)
                graph, excluded, _ = choose_int8(fp32_path, ranges, check, reference, sensitivity,
                                                 int8.snr_budget_db, [g for g in int8.exclude_groups
                                                                       if g in {s.group for s in sensitivity}])
                kept = {n for s in sensitivity if s.group in excluded for n in s.nodes}
                nodes = weighted_nodes(fp32)
                plan = PartPlan(part, quantized_nodes=tuple(n for n in nodes if n not in kept),
                                float_nodes=tuple(n for n in nodes if n in kept), excluded_groups=tuple(excluded),
                                sensitivity=tuple(sensitivity))
            snr = output_snr(reference, run_graph(graph, check))
            _save(graph, target)
            parts.append(PartPlan(**{**plan.__dict__, "snr_db": snr}))
    return PrecisionPlan(precision, method=check_method(int8.method) if precision == "int8" else None,
                         snr_budget_db=int8.snr_budget_db if precision == "int8" else None,
                         calibration_frames=calibration.frame_tokens, calibration_sha256=calibration.frame_sha256,
                         parts=tuple(parts))
