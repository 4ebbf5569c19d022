"""The precision plan of an export: what runs in which precision, and from which data.

Written as ``precision_plan.json`` beside the ONNX files (and, through the bundle, into
``deploy_metadata.yaml``), so a reader can tell how the graphs were made and reproduce it.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from centerpoint_deploy.errors import ExportError

PLAN_FILE = "precision_plan.json"


@dataclass(frozen=True)
class GroupSensitivity:
    """One layer group quantized alone: the graph outputs' SNR (dB) against fp32."""

    group: str
    nodes: tuple[str, ...]
    snr_db: dict[str, float]

    @property
    def worst_snr_db(self) -> float:
        return min(self.snr_db.values())


@dataclass(frozen=True)
class PartPlan:
    """The precision of one graph (``"encoder"`` or ``"head"``).

    Attributes:
        part: graph part.
        quantized_nodes: nodes in INT8 (Q/DQ on their inputs); empty outside int8.
        float_nodes: weighted nodes left in float (int8: the sensitive groups; fp16: overflow).
        excluded_groups: int8 layer groups kept out of INT8, most sensitive first.
        snr_db: the final graph's outputs' SNR (dB) against the fp32 graph on the check frames.
        sensitivity: the per-group scan (int8), most sensitive first.
        peaks: fp16: node -> measured ``max |output|`` of the nodes kept fp32.
    """

    part: str
    quantized_nodes: tuple[str, ...] = ()
    float_nodes: tuple[str, ...] = ()
    excluded_groups: tuple[str, ...] = ()
    snr_db: dict[str, float] = field(default_factory=dict)
    sensitivity: tuple[GroupSensitivity, ...] = ()
    peaks: dict[str, float] = field(default_factory=dict)

    @property
    def int8_share(self) -> float:
        """Share of weighted nodes in INT8 (0 outside int8)."""
        total = len(self.quantized_nodes) + len(self.float_nodes)
        return len(self.quantized_nodes) / total if total else 0.0


@dataclass(frozen=True)
class PrecisionPlan:
    """The whole export's precision.

    Attributes:
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"``.
        method: int8 calibration method (``None`` otherwise).
        snr_budget_db: int8: the smallest output SNR the sensitivity scan accepted.
        calibration_frames: sample tokens of the calibration frames (empty for fp32).
        calibration_sha256: sha256 of each calibration frame's points.
        parts: one :class:`PartPlan` per graph.
    """

    precision: str
    method: str | None = None
    snr_budget_db: float | None = None
    calibration_frames: tuple[str, ...] = ()
    calibration_sha256: tuple[str, ...] = ()
    parts: tuple[PartPlan, ...] = ()

    def part(self, name: str) -> PartPlan:
        return next(p for p in self.parts if p.part == name)

    @property
    def trt_precision(self) -> str:
        """What Autoware's ``trt_precision`` may say for these graphs (``fp32`` | ``fp16``).

        The node schema knows only those two; an INT8 Q/DQ graph is built strongly typed and
        its non-quantized layers run as the graph says (fp32 here), so it is ``fp32``.
        """
        return "fp16" if self.precision == "fp16" else "fp32"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for part, plan in zip(data["parts"], self.parts):
            part["int8_share"] = plan.int8_share
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PrecisionPlan":
        try:
            parts = tuple(
                PartPlan(part=p["part"], quantized_nodes=tuple(p["quantized_nodes"]),
                         float_nodes=tuple(p["float_nodes"]), excluded_groups=tuple(p["excluded_groups"]),
                         snr_db=dict(p["snr_db"]), peaks=dict(p["peaks"]),
                         sensitivity=tuple(GroupSensitivity(s["group"], tuple(s["nodes"]), dict(s["snr_db"]))
                                           for s in p["sensitivity"]))
                for p in data["parts"])
            return cls(precision=data["precision"], method=data["method"], snr_budget_db=data["snr_budget_db"],
                       calibration_frames=tuple(data["calibration_frames"]),
                       calibration_sha256=tuple(data["calibration_sha256"]), parts=parts)
        except (KeyError, TypeError) as exc:
            raise ExportError(f"precision plan is malformed: missing or wrong field {exc}") from exc


def write_plan(plan: PrecisionPlan, deploy_dir: Path | str) -> Path:
    """Write ``precision_plan.json`` into ``deploy_dir`` atomically; returns its path."""
    target = Path(deploy_dir) / PLAN_FILE
    fd, tmp = tempfile.mkstemp(prefix=PLAN_FILE + ".", dir=target.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(plan.to_dict(), f, indent=2)
        f.write("\n")
    os.replace(tmp, target)
    return target


def load_plan(deploy_dir: Path | str) -> PrecisionPlan | None:
    """The plan of ``deploy_dir``; ``None`` for exports without one (fp32 exports of older versions)."""
    path = Path(deploy_dir) / PLAN_FILE
    if not path.is_file():
        return None
    try:
        return PrecisionPlan.from_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path} is not valid JSON: {exc}") from exc
