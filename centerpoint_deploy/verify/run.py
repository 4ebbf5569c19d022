"""Verify backends against a reference detector, stage by stage, on the same inputs.

For every frame the reference runs its whole pipeline once (:meth:`Detector.run_stages`).
Every candidate backend then gets the reference's *own* intermediate inputs: the
reference's ``input_features`` go to each candidate encoder and the reference's
``spatial_features`` to each candidate head. A difference in one stage therefore cannot hide
or fake one in the next; each stage is judged on its own. The candidate's head outputs are
brought into the reference's ``rot_y_axis_reference`` convention, compared map by map and
decoded by the reference's own :meth:`Detector.detect_from_head_outputs` for the box-level
comparison. Finally each candidate also runs the full pipeline end to end (its own encoder
output feeding its own head), and those boxes are compared as well: that is what a user of
the deployed files gets.

Each backend's outputs must also be on the device it claims, and an ONNX Runtime backend's
session must have the provider of that device first (:attr:`Backend.providers`).
"""

from __future__ import annotations

import contextlib
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import onnx
import torch
from torch import Tensor

from centerpoint_deploy import contract
from centerpoint_deploy.backends.base import Backend
from centerpoint_deploy.stages import Pipeline, StageOutputs, task_maps
from centerpoint_deploy.errors import CenterPointError, VerificationError
from centerpoint_deploy.numerics import reproducible
from centerpoint_deploy.postprocess.rot_reference import apply_rot_y_axis_reference
from centerpoint_deploy.verify.bisect import BisectionReport, bisect_encoder, bisect_head, unwrap_model
from centerpoint_deploy.verify.boxes import (BoxComparison, BoxTolerance, ReferenceCells, compare_boxes,
                                             reference_cells)
from centerpoint_deploy.verify.node_view import compare_node_boxes
from centerpoint_deploy.verify.compare import (INT8_LAYER_TOLERANCE, TensorComparison, Tolerance, Tolerances,
                                              compare_tensors)
from centerpoint_deploy.verify.layerwise import LayerCheck, int8_layer_checks
from centerpoint_deploy.progress import Progress, track

_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


@dataclass(frozen=True)
class DeviceCheck:
    """Whether one backend ran where it claims."""

    backend: str
    claimed: str
    observed: tuple[str, ...]
    providers: tuple[str, ...] | None
    passed: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "claimed": self.claimed, "observed": list(self.observed),
                "providers": None if self.providers is None else list(self.providers),
                "passed": self.passed, "reason": self.reason}


def check_device(backend: Backend, outputs: Mapping[str, Tensor]) -> DeviceCheck:
    """Outputs on ``backend.device`` and, where exposed, the right ONNX Runtime provider first."""
    claimed = backend.device
    observed = tuple(sorted({str(t.device) for t in outputs.values()}))
    wrong = [str(t.device) for t in outputs.values()
             if t.device.type != claimed.type or (claimed.index is not None and t.device.index != claimed.index)]
    providers = backend.providers
    reasons = []
    if wrong:
        reasons.append(f"outputs on {sorted(set(wrong))}, backend claims {claimed}")
    if providers is not None and providers[:1] != (_PROVIDERS[claimed.type],):
        reasons.append(f"session providers {list(providers)} do not start with {_PROVIDERS[claimed.type]}")
    return DeviceCheck(backend.name, str(claimed), observed, providers, not reasons,
                       "; ".join(reasons) or f"outputs on {', '.join(observed)}")


@dataclass
class FrameResult:
    """Comparisons of one candidate on one frame.

    Attributes:
        frame: index into the frames given.
        num_points, num_voxels: size of the frame and of its pillar set.
        encoder: ``pillar_features`` comparison (reference ``input_features`` fed to both).
        head: one comparison per head output (reference ``spatial_features`` fed to both).
        boxes: boxes decoded from the candidate's head outputs vs the reference's boxes.
        end_to_end: boxes of the candidate's own full pipeline vs the reference's boxes.
        node_boxes: ``boxes`` under the Autoware node's post-processing (``None`` for a model
            the node cannot read), see :func:`~centerpoint_deploy.verify.node_view.compare_node_boxes`.
    """

    frame: int
    num_points: int
    num_voxels: int
    encoder: list[TensorComparison]
    head: list[TensorComparison]
    boxes: BoxComparison
    end_to_end: BoxComparison
    node_boxes: BoxComparison | None = None

    @property
    def passed(self) -> bool:
        return (all(self.encoder) and all(self.head) and bool(self.boxes) and bool(self.end_to_end)
                and (self.node_boxes is None or bool(self.node_boxes)))

    def to_dict(self) -> dict[str, Any]:
        return {"frame": self.frame, "num_points": self.num_points, "num_voxels": self.num_voxels,
                "passed": self.passed, "encoder": [c.to_dict() for c in self.encoder],
                "head": [c.to_dict() for c in self.head], "boxes": self.boxes.to_dict(),
                "end_to_end": self.end_to_end.to_dict(),
                "node_boxes": None if self.node_boxes is None else self.node_boxes.to_dict()}


@dataclass
class BackendResult:
    """Everything found about one candidate backend pair.

    ``worst_head_diff`` is ``|test - ref|`` (max over channels, ``[h, w]``) of the head output
    and frame whose worst element is furthest over its allowance (``worst_violation`` times
    it; > 1 fails), kept for the BEV plot (not serialised).
    """

    name: str
    encoder_backend: str
    head_backend: str
    rot_y_axis_reference: bool
    frames: list[FrameResult] = field(default_factory=list)
    device_checks: list[DeviceCheck] = field(default_factory=list)
    bisections: list[BisectionReport] = field(default_factory=list)
    layer_checks: list[LayerCheck] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    worst_head_output: str | None = None
    worst_violation: float = -1.0
    worst_head_diff: np.ndarray | None = None

    @property
    def passed(self) -> bool:
        return (not self.errors and bool(self.frames) and all(f.passed for f in self.frames)
                and all(d.passed for d in self.device_checks) and all(c.passed for c in self.layer_checks))

    def failures(self) -> list[str]:
        """One line per failed check, in the order a reader should look at them."""
        lines = list(self.errors)
        lines += [f"device: {d.backend}: {d.reason}" for d in self.device_checks if not d.passed]
        for f in self.frames:
            lines += [f"frame {f.frame}: encoder {c.name}: {c.reason}" for c in f.encoder if not c]
            lines += [f"frame {f.frame}: head {c.name}: {c.reason}" for c in f.head if not c]
            lines += [f"frame {f.frame}: boxes (head on reference BEV): {r}" for r in f.boxes.reasons]
            lines += [f"frame {f.frame}: boxes (end to end): {r}" for r in f.end_to_end.reasons]
            if f.node_boxes is not None:
                lines += [f"frame {f.frame}: boxes (Autoware node post-processing): {r}" for r in f.node_boxes.reasons]
        lines += [f"INT8 layer {c.module} ({c.part}) alone on the graph's own input: {c.comparison.reason}"
                  for c in self.layer_checks if not c.passed]
        lines += [b.summary for b in self.bisections]
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "encoder_backend": self.encoder_backend,
                "head_backend": self.head_backend, "rot_y_axis_reference": self.rot_y_axis_reference,
                "failures": self.failures(), "errors": self.errors,
                "device_checks": [d.to_dict() for d in self.device_checks],
                "frames": [f.to_dict() for f in self.frames],
                "bisections": [b.to_dict() for b in self.bisections],
                "layer_checks": [c.to_dict() for c in self.layer_checks],
                "worst_head_output": self.worst_head_output}


@dataclass
class VerificationReport:
    """Result of :func:`verify_backends`; truthy when every candidate passed every check."""

    reference: str
    reference_device: str
    tolerances: Tolerances
    box_tolerance: BoxTolerance
    settings: dict[str, Any]
    backends: dict[str, BackendResult]
    reference_device_check: list[DeviceCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (bool(self.backends) and all(b.passed for b in self.backends.values())
                and all(d.passed for d in self.reference_device_check))

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reference": self.reference, "reference_device": self.reference_device,
                "reference_device_check": [d.to_dict() for d in self.reference_device_check],
                "tolerances": self.tolerances.to_dict(), "box_tolerance": self.box_tolerance.to_dict(),
                "settings": self.settings, "backends": {k: v.to_dict() for k, v in self.backends.items()}}


def _environment() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    with contextlib.suppress(ImportError):
        import onnxruntime  # only its version, for the report

        info["onnxruntime"] = onnxruntime.__version__
    return info


def _to_convention(outputs: dict[str, Tensor], from_rot: bool, to_rot: bool, num_tasks: int) -> dict[str, Tensor]:
    """Head outputs re-expressed in the other rot convention when the two differ (the transform is its own inverse)."""
    if from_rot == to_rot:
        return outputs
    tasks = [apply_rot_y_axis_reference(maps) for maps in contract.split_tasks(outputs, num_tasks)]
    names = contract.head_output_names(num_tasks)
    return dict(zip(names, [maps[n] for maps in tasks for n in contract.HEAD_OUTPUTS]))


def _bev_diff(ref: Tensor, test: Tensor) -> np.ndarray:
    """``max over channels |test - ref|`` of batch item 0, ``[h, w]`` float64."""
    return (test.detach().cpu().double() - ref.detach().cpu().double()).abs()[0].amax(dim=0).numpy()


def _violation(c: TensorComparison) -> float:
    """How far over its allowance the worst element is (>1 fails); inf for structural failures."""
    if c.worst_index is None or c.ref_nonfinite or c.test_nonfinite:
        return 0.0 if c.passed else float("inf")
    allowed = c.tolerance.atol + c.tolerance.rtol * abs(c.worst_ref)
    return abs(c.worst_test - c.worst_ref) / max(allowed, 1e-300)


def frame_cells(reference: Pipeline, stages: StageOutputs, tolerance: BoxTolerance) -> ReferenceCells | None:
    """The reference's box at every cell a moved peak or an NMS-edge flip could come from
    (:func:`~centerpoint_deploy.verify.boxes.reference_cells` of its run's head outputs), where
    ``tolerance`` allows any (reduced precision); else ``None``."""
    if tolerance.max_flip_share == 0:
        return None
    config = reference.config
    maps = task_maps(stages.head_outputs, config, reference.rot_y_axis_reference, reference.device)
    return reference_cells(maps, config, config.decode.score_threshold - tolerance.score)


def _verify_frame(reference: Pipeline, stages: StageOutputs, name: str, candidate: Pipeline, index: int,
                  points: Tensor, tolerances: Tolerances, box_tolerance: BoxTolerance,
                  result: BackendResult) -> FrameResult:
    encoder, head, rot = candidate.encoder, candidate.head, candidate.rot_y_axis_reference
    config = reference.config
    num_tasks = len(config.head.tasks)
    encoded = encoder.infer({contract.ENCODER_INPUT: stages.features.to(encoder.device)})
    head_raw = head.infer({contract.HEAD_INPUT: stages.spatial_features.to(head.device)})
    if index == 0:
        result.device_checks += [check_device(encoder, encoded), check_device(head, head_raw)]
    pillar = encoded[contract.ENCODER_OUTPUT]
    encoder_cmp = [compare_tensors(contract.ENCODER_OUTPUT, stages.pillar_features, pillar,
                                   tolerances.for_output(contract.ENCODER_OUTPUT), ("voxel", "point", "channel"))]
    ref_rot = reference.rot_y_axis_reference
    head_out = _to_convention(head_raw, rot, ref_rot, num_tasks)
    head_cmp = []
    for out_name in contract.head_output_names(num_tasks):
        if out_name not in head_out:
            raise VerificationError(f"{name}: head backend {head.name} returned {sorted(head_out)}, lacks '{out_name}'")
        cmp = compare_tensors(out_name, stages.head_outputs[out_name], head_out[out_name], tolerances.for_output(out_name))
        head_cmp.append(cmp)
        violation = _violation(cmp)
        if violation > result.worst_violation and len(cmp.ref_shape) == 4 and cmp.ref_shape == cmp.test_shape:
            result.worst_violation = violation
            result.worst_head_output = f"{out_name} (frame {index})"
            result.worst_head_diff = _bev_diff(stages.head_outputs[out_name], head_out[out_name])
    threshold = config.decode.score_threshold
    ref_dets = stages.detections[0]
    cells = frame_cells(reference, stages, box_tolerance)
    boxes = compare_boxes(ref_dets, reference.detect_from_head_outputs(head_out)[0], box_tolerance, threshold,
                          cells=cells)
    end_to_end = compare_boxes(ref_dets, candidate(points), box_tolerance, threshold, cells=cells)
    # under the node's post-processing with the parameters the candidate's bundle ships (its thresholds)
    node_boxes = compare_node_boxes(reference, stages.head_outputs, head_out, box_tolerance,
                                    candidate.node_params, tolerances.for_output("rot"))  # one task: its plain names
    return FrameResult(index, int(points.shape[0]), stages.voxels.num_voxels, encoder_cmp, head_cmp, boxes, end_to_end,
                       node_boxes)


def verify_backends(reference: Pipeline, candidates: Mapping[str, Pipeline], frames: Sequence[Tensor],
                    tolerances: Tolerances, box_tolerance: BoxTolerance | None = None, *,
                    bisect_onnx: Mapping[str, Path | str] | None = None,
                    bisect_device: torch.device | str = "cpu", progress: Progress | None = None,
                    int8_layers: Mapping[str, Path | str] | None = None,
                    layer_tolerance: Tolerance = INT8_LAYER_TOLERANCE) -> VerificationReport:
    """Compare every candidate with ``reference`` on ``frames``.

    Args:
        reference: the reference detector (PyTorch on the chosen device).
        candidates: name -> detector whose backends are checked (its own pipeline gives the end-to-end boxes).
        frames: point clouds ``Tensor[N, len(use_dim)]`` float32, one frame each.
        tolerances: per-output tensor tolerances (``pillar_features``, ``heatmap``, ...).
        box_tolerance: box-level tolerances; fp32 defaults when ``None``.
        bisect_onnx: ``{"encoder": path, "head": path}``: when a candidate's stage fails,
            bisect that ONNX file (ONNX Runtime on ``bisect_device``) against the reference's
            PyTorch model on the first failing frame's reference input.
        progress: called ``progress("verify frames", done, len(frames))`` as frames finish.
        int8_layers: ``{"encoder": path, "head": path}`` of Q/DQ graphs: on the first frame,
            every INT8 layer is also run alone on its node's own input against the reference's
            (fake-quantized) module (:mod:`.layerwise`), judged by ``layer_tolerance``; a
            failing layer fails the candidate and, with ``bisect_onnx``, has its graph bisected.

    Returns:
        A :class:`VerificationReport`; backend errors (e.g. a shape the engine refuses) are
        recorded as failures of that candidate, not raised.
    """
    if not frames:
        raise VerificationError("no frames to verify: give at least one point cloud")
    if not candidates:
        raise VerificationError("no candidate backends to verify against the reference")
    box_tolerance = box_tolerance or BoxTolerance()
    results = {name: BackendResult(name, c.encoder.name, c.head.name, c.rot_y_axis_reference)
               for name, c in candidates.items()}
    reference_checks: list[DeviceCheck] = []
    with reproducible() as settings:
        reference.load()
        for candidate in candidates.values():
            candidate.load()
        for index, points in enumerate(track(frames, "verify frames", progress)):
            stages = reference.run_stages(points)
            if index == 0:
                reference_checks = [check_device(reference.encoder, {"pillar_features": stages.pillar_features}),
                                    check_device(reference.head, stages.head_outputs)]
            for name, candidate in candidates.items():
                result = results[name]
                if result.errors:
                    continue
                try:
                    frame = _verify_frame(reference, stages, name, candidate, index, points, tolerances,
                                          box_tolerance, result)
                except CenterPointError as exc:
                    result.errors.append(f"frame {index}: {exc}")
                    continue
                result.frames.append(frame)
                if index == 0 and int8_layers is not None:
                    result.layer_checks = _int8_layer_checks(reference, stages, int8_layers, layer_tolerance,
                                                             bisect_device)
                if bisect_onnx is not None:
                    _bisect_failures(reference, stages, frame, result, tolerances, bisect_onnx, bisect_device)
    settings = {**settings, **_environment()}
    return VerificationReport(reference.head.name, str(reference.device), tolerances, box_tolerance,
                              settings, results, reference_checks)


def _int8_layer_checks(reference: Pipeline, stages: StageOutputs, graphs: Mapping[str, Path | str],
                       tolerance: Tolerance, device: torch.device | str) -> list[LayerCheck]:
    """Each INT8 layer of the ``graphs`` alone on one frame's reference inputs (:mod:`.layerwise`)."""
    feeds = {"encoder": {contract.ENCODER_INPUT: stages.features}, "head": {contract.HEAD_INPUT: stages.spatial_features}}
    model = unwrap_model(reference)
    return [check for part, path in graphs.items()
            for check in int8_layer_checks(model, onnx.load(str(path)), part, feeds[part], tolerance, device)]


def _bisect_failures(reference: Pipeline, stages: StageOutputs, frame: FrameResult, result: BackendResult,
                     tolerances: Tolerances, onnx_files: Mapping[str, Path | str],
                     device: torch.device | str) -> None:
    """Bisect each failing stage once per candidate (first failing frame); a stage whose INT8
    layers failed alone counts as failing."""
    done = {b.part for b in result.bisections}
    layers_failed = {c.part for c in result.layer_checks if not c.passed}
    if "encoder" in onnx_files and "encoder" not in done and (not all(frame.encoder) or "encoder" in layers_failed):
        result.bisections.append(bisect_encoder(reference, onnx_files["encoder"], stages.features,
                                                tolerances.for_output(contract.ENCODER_OUTPUT), device))
    if "head" in onnx_files and "head" not in done and (not all(frame.head) or "head" in layers_failed):
        failing = next((c for c in frame.head if not c), frame.head[0])
        result.bisections.append(bisect_head(reference, onnx_files["head"], stages.spatial_features,
                                             tolerances.for_output(failing.name), device,
                                             rot_y_axis_reference=result.rot_y_axis_reference))
