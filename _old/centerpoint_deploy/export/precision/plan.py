"""The precision plan of an export: what runs in which precision, and from which data.

Written in full as ``precision_plan.json`` beside the ONNX files (listed with its sha256 in
``deploy_metadata.yaml``), so a reader can tell how the graphs were made and reproduce it; its
:class:`PlanRecord` summary is a field of ``deploy_metadata.yaml`` itself.
"""

from __future__ import annotations

import hashlib
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
    """One layer group quantized alone: the head outputs' detection SNR (dB) against fp32."""

    group: str
    nodes: tuple[str, ...]
    snr_db: dict[str, float]

    @property
    def worst_snr_db(self) -> float:
        return min(self.snr_db.values())


@dataclass(frozen=True)
class MapStep:
    """One plan the mAP-driven search judged (:mod:`.map_scan`).

    Attributes:
        excluded: layer groups float in this plan, in the order they left INT8.
        map: its mAP on the judged frames.
        tried: group -> the mAP with that group float too (the candidates of the next step;
            empty where the plan was within the budget or nothing was left to take out).
    """

    excluded: tuple[str, ...]
    map: float
    tried: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PartPlan:
    """The precision of one graph (``"encoder"`` or ``"head"``).

    Attributes:
        part: graph part.
        quantized_nodes: nodes in INT8 (Q/DQ on their inputs); empty outside int8.
        float_nodes: weighted nodes left in float (int8: the sensitive groups; fp16: overflow).
        excluded_groups: int8 layer groups kept out of INT8, most sensitive first.
        snr_db: the head outputs' detection SNR (dB) against fp32 with this graph reduced, the
            other fp32, on the check frames (:func:`~.sensitivity.detection_snr`).
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
        snr_budget_db: int8 chosen by SNR: the smallest head output SNR (detection-weighted, dB)
            the scan accepted; ``None`` where the plan was chosen by mAP.
        calibration_frames: sample tokens of the calibration frames (empty for fp32).
        calibration_sha256: sha256 of each calibration frame's points.
        parts: one :class:`PartPlan` per graph.
        map_budget: int8 chosen by mAP: the largest accepted mAP drop against fp32.
        map_frames: the annotated calibration frames the mAP was measured on (sample tokens).
        baseline_map: the fp32 graphs' mAP on those frames.
        map_steps: the search, the chosen plan last (:class:`MapStep`).
    """

    precision: str
    method: str | None = None
    snr_budget_db: float | None = None
    calibration_frames: tuple[str, ...] = ()
    calibration_sha256: tuple[str, ...] = ()
    parts: tuple[PartPlan, ...] = ()
    map_budget: float | None = None
    map_frames: tuple[str, ...] = ()
    baseline_map: float | None = None
    map_steps: tuple[MapStep, ...] = ()

    @property
    def map_drop(self) -> float | None:
        """mAP drop of the chosen plan against fp32 on the judged frames (``None`` unless chosen by mAP)."""
        if self.baseline_map is None or not self.map_steps:
            return None
        return self.baseline_map - self.map_steps[-1].map

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
            steps = tuple(MapStep(tuple(s["excluded"]), float(s["map"]), dict(s["tried"]))
                          for s in data.get("map_steps", ()))
            return cls(precision=data["precision"], method=data["method"], snr_budget_db=data["snr_budget_db"],
                       calibration_frames=tuple(data["calibration_frames"]),
                       calibration_sha256=tuple(data["calibration_sha256"]), parts=parts,
                       map_budget=data.get("map_budget"), map_frames=tuple(data.get("map_frames", ())),
                       baseline_map=data.get("baseline_map"), map_steps=steps)
        except (KeyError, TypeError) as exc:
            raise ExportError(f"precision plan is malformed: missing or wrong field {exc}") from exc


@dataclass(frozen=True)
class PlanRecord:
    """The plan as ``deploy_metadata.yaml`` records it (:attr:`Manifest.precision_plan`).

    Attributes:
        precision: ``"fp16"`` or ``"int8"``.
        method: int8 calibration method (``None`` for fp16).
        snr_budget_db: int8: the scan's budget (``None`` for fp16).
        calibration_frames: number of calibration frames.
        calibration_digest: sha256 of the frames' sha256s, one per line in order.
        kept_float: part -> int8: the layer groups kept float; fp16: the nodes kept fp32.
        int8_layers: part -> weighted layers in INT8 (Q/DQ on their inputs).
        weighted_layers: part -> weighted layers (Conv, ConvTranspose, MatMul, Gemm).
        map_budget: int8 chosen by mAP: the accepted mAP drop (``None``: chosen by SNR).
        map_drop: int8 chosen by mAP: the chosen plan's measured mAP drop on the judged frames.
    """

    precision: str
    method: str | None
    snr_budget_db: float | None
    calibration_frames: int
    calibration_digest: str
    kept_float: dict[str, tuple[str, ...]]
    int8_layers: dict[str, int]
    weighted_layers: dict[str, int]
    map_budget: float | None = None
    map_drop: float | None = None

    @property
    def head_int8_share(self) -> float:
        """Share of the backbone/neck/head graph's weighted layers in INT8."""
        total = self.weighted_layers.get("head", 0)
        return self.int8_layers.get("head", 0) / total if total else 0.0

    @classmethod
    def of(cls, plan: PrecisionPlan) -> "PlanRecord":
        return cls(plan.precision, plan.method, plan.snr_budget_db, len(plan.calibration_sha256),
                   hashlib.sha256("\n".join(plan.calibration_sha256).encode()).hexdigest(),
                   {p.part: p.excluded_groups if plan.precision == "int8" else tuple(p.peaks) for p in plan.parts},
                   {p.part: len(p.quantized_nodes) for p in plan.parts},
                   {p.part: len(p.quantized_nodes) + len(p.float_nodes) for p in plan.parts},
                   plan.map_budget, plan.map_drop)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kept_float": {k: list(v) for k, v in self.kept_float.items()},
                "head_int8_share": round(self.head_int8_share, 4)}

    @classmethod
    def from_dict(cls, data: Any) -> "PlanRecord":
        """Read :meth:`to_dict`'s mapping back; :class:`ExportError` when it is malformed.

        ``map_budget`` / ``map_drop`` may be absent (records written before the mAP-driven plan)."""
        names = [f for f in cls.__dataclass_fields__]
        optional = {"map_budget", "map_drop"}
        if not isinstance(data, dict) or not set(names) - optional <= set(data) <= {*names, "head_int8_share"} \
                or "head_int8_share" not in data:
            raise ExportError(f"precision_plan must be a mapping with fields {sorted([*names, 'head_int8_share'])}, "
                              f"got {data!r}")
        try:
            record = cls(**{**{n: data[n] for n in names if n in data},
                            "kept_float": {str(k): tuple(v) for k, v in data["kept_float"].items()}})
        except (AttributeError, TypeError) as exc:
            raise ExportError(f"precision_plan is malformed: {exc}") from exc
        if data["head_int8_share"] != round(record.head_int8_share, 4):
            raise ExportError(f"precision_plan.head_int8_share = {data['head_int8_share']!r} is not "
                              f"int8_layers / weighted_layers of the head ({record.head_int8_share:.4f})")
        return record


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
