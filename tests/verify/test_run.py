"""verify_backends on the tiny model: PyTorch CPU vs ONNX Runtime CPU, good and broken exports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from centerpoint_deploy.backends.base import Backend, TensorSpec
from centerpoint_deploy.errors import VerificationError
from centerpoint_deploy.verify.compare import default_tolerances
from centerpoint_deploy.numerics import reproducible
from centerpoint_deploy.verify.run import check_device, verify_backends

from tests.verify.conftest import ort_detector, scaled_initializer_copy

FP32 = default_tolerances("fp32")


def test_onnxruntime_cpu_matches_pytorch_cpu_at_fp32_defaults(reference, deploy_dir, frames):
    report = verify_backends(reference, {"onnxruntime": ort_detector(reference.config, deploy_dir, False)}, frames, FP32)
    result = report.backends["onnxruntime"]
    assert report, result.failures()
    assert len(result.frames) == 2
    for frame in result.frames:
        assert [c.name for c in frame.head] == ["heatmap", "reg", "height", "dim", "rot", "vel"]
        assert frame.boxes.num_ref > 0 and frame.boxes.matched_share == 1.0
        assert frame.end_to_end.matched_share == 1.0
        assert all(c.max_abs < 1e-4 for c in frame.encoder + frame.head)
    assert [d.passed for d in result.device_checks] == [True, True]
    assert report.settings["torch.backends.cudnn.deterministic"] is True
    json.dumps(report.to_dict(), allow_nan=False)


def test_rot_export_with_its_flag_gives_the_same_boxes(reference, rot_deploy_dir, frames):
    report = verify_backends(reference, {"ort-rot": ort_detector(reference.config, rot_deploy_dir, True)}, frames[:1], FP32)
    assert report, report.backends["ort-rot"].failures()


@pytest.mark.parametrize("directory, claimed", [("rot_deploy_dir", False), ("deploy_dir", True)],
                         ids=["rot-export-manifest-says-plain", "plain-export-manifest-says-rot"])
def test_rot_convention_mismatch_fails_on_dim_rot_and_boxes(request, reference, frames, directory, claimed):
    path: Path = request.getfixturevalue(directory)
    onnx_files = {"encoder": path / "pts_voxel_encoder.onnx", "head": path / "pts_backbone_neck_head.onnx"}
    report = verify_backends(reference, {"bad": ort_detector(reference.config, path, claimed)}, frames[:1], FP32, bisect_onnx=onnx_files)
    result = report.backends["bad"]
    assert not report
    frame = result.frames[0]
    verdicts = {c.name: c.passed for c in frame.head}
    assert verdicts == {"heatmap": True, "reg": True, "height": True, "dim": False, "rot": False, "vel": True}
    assert frame.encoder[0].passed
    assert not frame.boxes and not frame.end_to_end
    # Every layer agrees: the bisection blames what lies outside the network modules.
    (bisection,) = result.bisections
    assert bisection.part == "head" and bisection and bisection.layers
    assert "outside the network modules" in bisection.summary


def test_perturbed_head_weight_fails_and_is_bisected_to_its_layer(reference, deploy_dir, frames, tmp_path):
    broken = scaled_initializer_copy(deploy_dir / "pts_backbone_neck_head.onnx", tmp_path / "head.onnx",
                                     "/pts_bbox_head/shared_conv/conv/Conv", 1.05)
    report = verify_backends(reference, {"broken": ort_detector(reference.config, deploy_dir, False, broken)}, frames[:1], FP32,
                             bisect_onnx={"head": broken})
    result = report.backends["broken"]
    assert not report
    assert not all(result.frames[0].head)
    assert result.frames[0].encoder[0].passed
    (bisection,) = result.bisections
    assert bisection.first_failure.probe.module == "pts_bbox_head.shared_conv.conv"
    assert any("first diverging layer is pts_bbox_head.shared_conv.conv" in line for line in result.failures())


class _Lying(Backend):
    """Claims ``device`` but returns CPU tensors; optionally exposes session providers."""

    kind = "fake"

    def __init__(self, device: str, providers: list[str] | None = None) -> None:
        super().__init__(device)
        self._providers = None if providers is None else tuple(providers)

    @property
    def providers(self) -> tuple[str, ...] | None:
        return self._providers

    @property
    def input_specs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec("x", (None,)),)

    @property
    def output_names(self) -> tuple[str, ...]:
        return ("y",)

    def _load_impl(self) -> None:
        pass

    def _infer_impl(self, feed: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"y": feed["x"].cpu()}


def test_device_check_catches_outputs_and_providers_of_another_device():
    outputs = {"y": torch.zeros(2)}
    assert check_device(_Lying("cpu"), outputs).passed
    wrong_device = check_device(_Lying("cuda"), outputs)
    assert not wrong_device.passed and "claims cuda" in wrong_device.reason
    wrong_provider = check_device(_Lying("cpu", ["CUDAExecutionProvider", "CPUExecutionProvider"]), outputs)
    assert not wrong_provider.passed and "CPUExecutionProvider" in wrong_provider.reason


def test_device_check_reads_the_real_onnxruntime_session(reference, deploy_dir, frames, monkeypatch):
    """The check read ``backend.providers``, which only the fake above had: it never ran on a real backend."""
    report = verify_backends(reference, {"ort": ort_detector(reference.config, deploy_dir, False)}, frames[:1], FP32)
    checks = report.backends["ort"].device_checks
    assert [c.providers for c in checks] == [("CPUExecutionProvider",)] * 2 and all(checks)
    candidate = ort_detector(reference.config, deploy_dir, False)
    head = candidate.head.load()
    outputs = head.infer({"spatial_features": torch.zeros(1, 32, 64, 64)})
    session = head._session
    monkeypatch.setattr(session, "get_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    check = check_device(head, outputs)
    assert not check.passed and "do not start with CPUExecutionProvider" in check.reason


def test_reproducible_sets_and_restores_switches():
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = (matmul.allow_tf32, cudnn.allow_tf32, cudnn.deterministic, cudnn.benchmark)
    cudnn.benchmark = True
    try:
        with reproducible() as settings:
            assert (matmul.allow_tf32, cudnn.allow_tf32, cudnn.deterministic, cudnn.benchmark) == (False, False, True, False)
            assert settings["torch.backends.cudnn.benchmark"] is False
        assert cudnn.benchmark is True
    finally:
        matmul.allow_tf32, cudnn.allow_tf32, cudnn.deterministic, cudnn.benchmark = before


def test_no_frames_or_no_candidates_is_an_error(reference, deploy_dir, frames):
    with pytest.raises(VerificationError, match="no frames"):
        verify_backends(reference, {"ort": ort_detector(reference.config, deploy_dir, False)}, [], FP32)
    with pytest.raises(VerificationError, match="no candidate"):
        verify_backends(reference, {}, frames, FP32)
