"""Pure helpers of the TensorRT build (no TensorRT needed) and its missing-TensorRT error."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.errors import BackendUnavailableError, ExportError
from centerpoint_deploy.export.tensorrt_build import build_engine, derive_profiles, precision_flags, profile_problems


def test_default_profiles_of_the_tiny_model(tiny_config: ModelConfig) -> None:
    profiles = derive_profiles(tiny_config)
    # min 1000 (AWML), opt max_voxels // 4 = 1000, max 4000; 32 points, F = 11.
    assert profiles["encoder"] == {"input_features": ((1000, 32, 11), (1000, 32, 11), (4000, 32, 11))}
    assert profiles["head"] == {"spatial_features": ((1, 32, 64, 64), (1, 32, 64, 64), (1, 32, 64, 64))}


def test_autoware_static_profile_and_dynamic_batch(tiny_config: ModelConfig) -> None:
    profiles = derive_profiles(tiny_config, static_encoder=True, max_batch=4)
    assert profiles["encoder"]["input_features"] == ((4000, 32, 11),) * 3
    assert profiles["head"]["spatial_features"] == ((1, 32, 64, 64), (1, 32, 64, 64), (4, 32, 64, 64))


def test_profile_clamps_min_and_checks_opt(tiny_config: ModelConfig) -> None:
    small = replace(tiny_config, voxelization=replace(tiny_config.voxelization, max_voxels=600))
    assert derive_profiles(small)["encoder"]["input_features"] == ((600, 32, 11), (600, 32, 11), (600, 32, 11))
    assert derive_profiles(tiny_config, min_voxels=10, opt_voxels=2500)["encoder"]["input_features"][:2] == (
        (10, 32, 11), (2500, 32, 11))
    with pytest.raises(ExportError, match=r"opt_voxels = 5000 must lie in \[1000, max_voxels=4000\]"):
        derive_profiles(tiny_config, opt_voxels=5000)
    with pytest.raises(ExportError, match="min_voxels = 0"):
        derive_profiles(tiny_config, min_voxels=0)
    with pytest.raises(ExportError, match="max_batch = 0"):
        derive_profiles(tiny_config, max_batch=0)


def test_precision_flags() -> None:
    assert precision_flags("fp32") == frozenset()
    assert precision_flags("tf32") == {"TF32"}
    assert precision_flags("fp16") == {"FP16", "TF32"}
    with pytest.raises(ExportError, match="precision 'int8' is not one of"):
        precision_flags("int8")


def test_profile_problems() -> None:
    inputs = {"input_features": (None, None, 11)}
    good = {"input_features": ((1, 32, 11), (8, 32, 11), (16, 32, 11))}
    assert profile_problems(good, inputs) == []
    assert profile_problems({"x": good["input_features"]}, inputs) == [
        "profile covers ['x'], the network's inputs are ['input_features']"]
    assert profile_problems({"input_features": ((1, 32, 10),) * 3}, inputs) == [
        "'input_features' axis 2 is fixed at 11, profile gives 10/10/10"]
    assert profile_problems({"input_features": ((9, 32, 11), (8, 32, 11), (16, 32, 11))}, inputs) == [
        "'input_features' axis 0: need 1 <= min <= opt <= max, got 9/8/16"]
    assert profile_problems({"input_features": ((1, 32),) * 3}, inputs) == [
        "'input_features': profile shapes [[1, 32], [1, 32], [1, 32]] do not have rank 3"]


def test_missing_tensorrt_is_backend_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailableError, match="TensorRT is not installed: pip install tensorrt"):
        build_engine(onnx_path, tmp_path / "model.engine", profile={}, precision="fp16")


def test_build_engine_checks_arguments_first(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="precision 'bf16'"):
        build_engine(tmp_path / "a.onnx", tmp_path / "a.engine", profile={}, precision="bf16")  # type: ignore[arg-type]
    with pytest.raises(ExportError, match="does not exist"):
        build_engine(tmp_path / "a.onnx", tmp_path / "a.engine", profile={}, precision="fp32")
    with pytest.raises(ExportError, match="below 1 MiB"):
        build_engine(tmp_path / "a.onnx", tmp_path / "a.engine", profile={}, workspace_bytes=10)


def test_build_mode_follows_the_tensorrt_version_and_the_onnx_precision() -> None:
    from centerpoint_deploy.export.tensorrt_build import build_mode

    for graph in ("fp32", "fp16", "int8"):  # TensorRT 11: always strongly typed, no flags
        mode = build_mode("11.0.0.7", graph)
        assert mode.strongly_typed and not mode.flags and mode.precision == graph and "strongly typed" in mode.reason
    with pytest.raises(ExportError, match="has no FP16 flag: export the ONNX with --precision fp16"):
        build_mode("11.1.0", "fp32", "fp16")
    ten = build_mode("10.13.0.35", "fp32", "fp16")  # TensorRT 10: the flags, weakly typed
    assert not ten.strongly_typed and ten.flags == {"FP16", "TF32"} and ten.precision == "fp16"
    assert build_mode("10.3", "fp32").flags == frozenset() and not build_mode("10.3", "fp32").strongly_typed
    assert build_mode("10.3", "fp16").flags == {"FP16", "TF32"}
    assert build_mode("10.3", "int8").strongly_typed
    with pytest.raises(ExportError, match="the ONNX is fp16; a fp32 engine needs an fp32 export"):
        build_mode("10.3", "fp16", "fp32")
    with pytest.raises(ExportError, match="too old"):
        build_mode("8.6.1", "fp32")


def test_network_flags_use_the_modules_strongly_typed_bit() -> None:
    """A fake ``tensorrt`` module object: the flag bit is read from it, not assumed."""
    import types

    from centerpoint_deploy.export.tensorrt_build import build_mode, network_flags

    fake = types.SimpleNamespace(NetworkDefinitionCreationFlag=types.SimpleNamespace(STRONGLY_TYPED=3))
    assert network_flags(fake, build_mode("11.0", "int8")) == 1 << 3
    assert network_flags(fake, build_mode("10.8", "fp32", "tf32")) == 0
