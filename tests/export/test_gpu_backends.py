"""Exported tiny model on GPU runtimes: ONNX Runtime CUDA (``cuda``) and TensorRT (``tensorrt``).

Skipped with a reason where the runtime or the GPU is missing; they run where it is installed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from centerpoint_deploy.backends.pytorch import TorchEncoderBackend, TorchHeadBackend
from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.detector import Detector
from centerpoint_deploy.errors import BackendError
from centerpoint_deploy.export.manifest import load_manifest
from centerpoint_deploy.export.onnx_export import ExportResult, random_points
from centerpoint_deploy.export.tensorrt_build import build_deploy_engines, derive_profiles
from centerpoint_deploy.preprocess import prepare_encoder_input, scatter_to_bev
from centerpoint_deploy.variant import VariantSpec, build_detector


def _has_tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def _has_ort_cuda() -> bool:
    try:
        import onnxruntime
    except ImportError:
        return False
    return torch.cuda.is_available() and "CUDAExecutionProvider" in onnxruntime.get_available_providers()


needs_tensorrt = pytest.mark.skipif(not _has_tensorrt(), reason="needs TensorRT (pip install tensorrt) and a CUDA GPU")
needs_ort_cuda = pytest.mark.skipif(not _has_ort_cuda(), reason="needs onnxruntime-gpu and a CUDA GPU")


def _compare_parts(config: ModelConfig, reference, candidate, atol: float) -> None:
    """Encoder at two voxel counts and the head, candidate (GPU) vs reference backends."""
    with reference[0], reference[1], candidate[0], candidate[1]:
        for seed, count in ((11, 3000), (12, 400)):
            voxels, features = prepare_encoder_input([random_points(config, seed=seed)[:count]], config)
            expected = reference[0].infer({"input_features": features})["pillar_features"]
            got = candidate[0].infer({"input_features": features.cuda()})["pillar_features"]
            assert got.device.type == "cuda"
            torch.testing.assert_close(got.cpu(), expected, atol=atol, rtol=0)
            bev = scatter_to_bev(expected, voxels.coords, 1, config.bev_shape)
            expected_maps = reference[1].infer({"spatial_features": bev})
            got_maps = candidate[1].infer({"spatial_features": bev.cuda()})
            for name, tensor in expected_maps.items():
                torch.testing.assert_close(got_maps[name].cpu(), tensor, atol=atol, rtol=0)
            assert candidate[1].last_inference_time is not None


def _pair(kind: str, config: ModelConfig, deploy_dir: Path, device: str = "cpu"):
    """``(encoder, head, rot_y_axis_reference)`` of the ``kind`` detector of ``deploy_dir``."""
    detector = build_detector(VariantSpec.parse(kind, device=device), config, deploy_dir=deploy_dir)
    return detector.encoder, detector.head, detector.rot_y_axis_reference


def _boxes(config: ModelConfig, backends, points: torch.Tensor):
    encoder, head, rot_reference = backends
    with Detector(config, encoder, head, rot_y_axis_reference=rot_reference, device=encoder.device) as detector:
        return detector(points.to(encoder.device)).to("cpu")


@pytest.mark.cuda
@needs_ort_cuda
def test_onnxruntime_cuda_matches_cpu(plain_export: ExportResult, tiny_config: ModelConfig) -> None:
    deploy_dir = plain_export.manifest.deploy_dir
    cpu = _pair("onnxruntime", tiny_config, deploy_dir)
    gpu = _pair("onnxruntime", tiny_config, deploy_dir, "cuda")
    _compare_parts(tiny_config, cpu, gpu, atol=1e-4)


@pytest.fixture(scope="module")
def engine_dirs(plain_export: ExportResult, rot_export: ExportResult, tmp_path_factory: pytest.TempPathFactory):
    """Copies of both exports with fp32 (plain) and fp16 (rot, Autoware's static profile) engines."""
    fp32 = shutil.copytree(plain_export.manifest.deploy_dir, tmp_path_factory.mktemp("trt") / "fp32")
    fp16 = shutil.copytree(rot_export.manifest.deploy_dir, tmp_path_factory.mktemp("trt") / "fp16")
    cache = fp32.parent / "timing.cache"
    build_deploy_engines(fp32, precision="fp32", timing_cache=cache)
    profiles = derive_profiles(load_manifest(fp16).model_config(), static_encoder=True)
    build_deploy_engines(fp16, precision="fp16", profiles=profiles, timing_cache=cache)
    return fp32, fp16, cache


@pytest.mark.tensorrt
@needs_tensorrt
def test_fp32_engines_match_onnxruntime(engine_dirs, tiny_config: ModelConfig) -> None:
    fp32, _, cache = engine_dirs
    assert cache.is_file()
    manifest = load_manifest(fp32)
    assert {part: record.precision for part, record in manifest.engines.items()} == {"encoder": "fp32", "head": "fp32"}
    assert manifest.engines["encoder"].profile == {"input_features": [[1000, 32, 11], [1000, 32, 11], [4000, 32, 11]]}
    reference = _pair("onnxruntime", tiny_config, fp32)
    engines = _pair("tensorrt", tiny_config, fp32, "cuda")
    _compare_parts(tiny_config, reference, engines, atol=1e-3)


@pytest.mark.tensorrt
@needs_tensorrt
def test_engines_give_the_pytorch_boxes(engine_dirs, tiny_model, tiny_config: ModelConfig) -> None:
    fp32, fp16, _ = engine_dirs
    points = random_points(tiny_config, seed=13)[:2500]
    reference = _boxes(tiny_config, (TorchEncoderBackend(tiny_model, tiny_config),
                                     TorchHeadBackend(tiny_model, tiny_config), False), points)
    got = _boxes(tiny_config, _pair("tensorrt", tiny_config, fp32, "cuda"), points)
    assert len(reference) > 10 and torch.equal(got.labels, reference.labels)
    torch.testing.assert_close(got.boxes, reference.boxes, atol=1e-3, rtol=0)
    # fp16 + rot_y_axis_reference + static encoder profile: the pipeline pads nothing, so a
    # cloud must have exactly max_voxels pillars; a smaller one is refused with the range.
    encoder, head, rot_reference = _pair("tensorrt", tiny_config, fp16, "cuda")
    assert rot_reference is True
    with encoder:
        with pytest.raises(BackendError, match=r"axis 0 is \d+, the engine's profile allows 4000\.\.4000"):
            encoder.infer({"input_features": torch.zeros(500, 32, 11, device="cuda")})
        out = encoder.infer({"input_features": torch.zeros(4000, 32, 11, device="cuda")})["pillar_features"]
        assert out.shape == (4000, 1, 32) and bool(torch.isfinite(out).all())


@pytest.mark.tensorrt
@needs_tensorrt
def test_changed_engine_is_refused(engine_dirs, tiny_config: ModelConfig, tmp_path: Path) -> None:
    copy = shutil.copytree(engine_dirs[0], tmp_path / "copy")
    (copy / "pts_voxel_encoder.engine").write_bytes(b"garbage")
    with pytest.raises(BackendError, match="pts_voxel_encoder.engine changed after export"):
        _pair("tensorrt", tiny_config, copy, "cuda")
