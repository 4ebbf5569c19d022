"""Turn the checked fp32 graphs of a deploy directory into the asked precision, in place.

:func:`reduce_precision` reads each fp32 graph, makes its fp16 or INT8 version from the
calibration inputs, writes it over the fp32 file (temp name, then ``os.replace``) and returns
the :class:`~.plan.PrecisionPlan`. The fp32 graphs have passed the export's PyTorch check
before; each reduced graph is measured against them by the head outputs it gives, the other
part fp32 (:func:`~.sensitivity.detection_snr` on the check frames).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from centerpoint_deploy import contract
from centerpoint_deploy.errors import ExportError
from centerpoint_deploy.export.precision import PRECISIONS
from centerpoint_deploy.export.precision.calibration import CalibrationSet
from centerpoint_deploy.export.precision.fp16 import to_fp16
from centerpoint_deploy.export.precision.int8 import calibrate, check_method, quantized_layers
from centerpoint_deploy.export.precision.map_scan import MapBudget, choose_int8_by_map
from centerpoint_deploy.export.precision.plan import GroupSensitivity, PartPlan, PrecisionPlan
from centerpoint_deploy.export.precision.sensitivity import (DetectionProbe, choose_int8, layer_groups, scan_groups,
                                                               weighted_nodes)

_FILES = {"encoder": contract.ENCODER_FILE, "head": contract.HEAD_FILE}


@dataclass(frozen=True)
class Int8Options:
    """How INT8 graphs are made.

    Attributes:
        method: calibration method (:data:`~.int8.CALIBRATION_METHODS`).
        snr_budget_db: smallest acceptable :func:`~.sensitivity.detection_snr` (dB) of every head
            output against fp32, each graph judged with the other one fp32.
        check_frames: calibration frames the sensitivity scan and the SNR are measured on.
        exclude_groups: layer groups kept out of INT8 whatever the scan says.
        by_map: choose the plan by mAP instead of SNR (:mod:`.map_scan`): the budget, the
            annotated frames it is judged on and the judge.
    """

    method: str = "max"
    snr_budget_db: float = 25.0
    check_frames: int = 8
    exclude_groups: tuple[str, ...] = ()
    by_map: MapBudget | None = None

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
                     int8: Int8Options = Int8Options(), *, rot_y_axis_reference: bool = False) -> PrecisionPlan:
    """Convert both graphs of ``deploy_dir`` to ``precision`` in place; the plan of what was done.

    Args:
        rot_y_axis_reference: the head graph emits Autoware's dim/rot convention (for the mAP
            judge of an INT8 plan chosen by mAP).

    Raises:
        ExportError: an unknown precision, fp16/int8 without calibration inputs, or a failure.
    """
    if precision not in PRECISIONS:
        raise ExportError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return PrecisionPlan("fp32", parts=tuple(PartPlan(part) for part in _FILES))
    if calibration is None or not len(calibration):
        raise ExportError(f"a {precision} export needs calibration frames from a dataset")
    check = calibration.subset(range(min(int8.check_frames, len(calibration))))
    with tempfile.TemporaryDirectory(prefix="cp-precision.") as tmp:
        fp32_paths = {part: Path(tmp) / name for part, name in _FILES.items()}
        for part, name in _FILES.items():
            shutil.copyfile(deploy_dir / name, fp32_paths[part])
        fp32 = {part: onnx.load(str(path)) for part, path in fp32_paths.items()}
        probes = {part: DetectionProbe.build(part, check, fp32["encoder"], fp32["head"]) for part in _FILES}
        if precision == "fp16":
            parts = [_fp16_part(part, fp32[part], calibration, probes[part], deploy_dir) for part in _FILES]
            return PrecisionPlan("fp16", calibration_frames=calibration.frame_tokens,
                                 calibration_sha256=calibration.frame_sha256, parts=tuple(parts))
        return _int8_plan(fp32_paths, fp32, calibration, probes, int8, deploy_dir, rot_y_axis_reference)


def _fp16_part(part: str, fp32: onnx.ModelProto, calibration: CalibrationSet, probe: DetectionProbe,
               deploy_dir: Path) -> PartPlan:
    """Write ``part`` in fp16 (overflowing nodes kept fp32); its plan."""
    converted = to_fp16(fp32, calibration.feeds(part))
    _save(converted.graph, deploy_dir / _FILES[part])
    nodes = weighted_nodes(fp32)
    return PartPlan(part, float_nodes=tuple(n for n in converted.kept_fp32 if n in nodes), peaks=converted.peaks,
                    snr_db=probe.snr(converted.graph))


def _int8_plan(fp32_paths: dict[str, Path], fp32: dict[str, onnx.ModelProto], calibration: CalibrationSet,
               probes: dict[str, DetectionProbe], int8: Int8Options, deploy_dir: Path,
               rot_y_axis_reference: bool) -> PrecisionPlan:
    """Calibrate, scan and choose the INT8 plan of both graphs (by SNR, or by mAP on request); write them."""
    groups = {part: set(layer_groups(graph)) for part, graph in fp32.items()}
    unknown = [g for g in int8.exclude_groups if not any(g in known for known in groups.values())]
    if unknown:
        raise ExportError(f"layer group(s) {unknown} do not exist; the groups are "
                          f"{sorted(set().union(*groups.values()))}")
    ranges = {part: calibrate(fp32_paths[part], calibration.feeds(part), int8.method) for part in _FILES}
    sensitivity: dict[str, list[GroupSensitivity]] = {part: scan_groups(fp32_paths[part], ranges[part], probes[part])
                                                      for part in _FILES}
    map_fields: dict[str, Any] = {}
    graphs: dict[str, onnx.ModelProto] = {}
    excluded: dict[str, list[str]] = {}
    snr: dict[str, dict[str, float]] = {}
    if int8.by_map is None:
        for part in _FILES:
            graphs[part], excluded[part], snr[part] = choose_int8(
                fp32_paths[part], ranges[part], probes[part], sensitivity[part], int8.snr_budget_db,
                [g for g in int8.exclude_groups if g in groups[part]])
    else:
        num_tasks = len(fp32["head"].graph.output) // len(contract.HEAD_OUTPUTS)
        choice = choose_int8_by_map(fp32_paths, ranges, sensitivity, int8.by_map, int8.exclude_groups,
                                    rot_y_axis_reference=rot_y_axis_reference, num_tasks=num_tasks)
        for part in _FILES:
            graphs[part], excluded[part] = choice.graphs[part], list(choice.excluded[part])
            snr[part] = probes[part].snr(graphs[part])
        map_fields = {"map_budget": int8.by_map.budget, "map_frames": int8.by_map.frames.frame_tokens,
                      "baseline_map": choice.baseline_map, "map_steps": choice.steps}
    parts = []
    for part in _FILES:
        nodes = weighted_nodes(fp32[part])
        kept = {n for s in sensitivity[part] if s.group in excluded[part] for n in s.nodes}
        missed = sorted(set(nodes) - kept - set(quantized_layers(graphs[part])))
        if missed:  # ORT leaves a layer float when it has no range for its input
            raise ExportError(f"the {part} graph's layers {missed} were to be INT8 but have no Q/DQ inputs")
        _save(graphs[part], deploy_dir / _FILES[part])
        parts.append(PartPlan(part, quantized_nodes=tuple(n for n in nodes if n not in kept),
                              float_nodes=tuple(n for n in nodes if n in kept),
                              excluded_groups=tuple(excluded[part]), sensitivity=tuple(sensitivity[part]),
                              snr_db=snr[part]))
    return PrecisionPlan("int8", method=check_method(int8.method),
                         snr_budget_db=int8.snr_budget_db if int8.by_map is None else None,
                         calibration_frames=calibration.frame_tokens, calibration_sha256=calibration.frame_sha256,
                         parts=tuple(parts), **map_fields)
