"""manifest.json round trip and every way loading it can fail; the Autoware parameter file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.errors import BackendError
from centerpoint_deploy.export.autoware_params import autoware_model_params, write_param_yaml
from centerpoint_deploy.export.manifest import EngineRecord, Manifest, load_manifest, sha256_file, write_manifest


def _manifest(deploy_dir: Path, config: ModelConfig) -> Manifest:
    (deploy_dir / "pts_voxel_encoder.onnx").write_bytes(b"encoder bytes")
    (deploy_dir / "pts_backbone_neck_head.onnx").write_bytes(b"head bytes")
    return Manifest(
        deploy_dir=deploy_dir, tool_version="0.1.0", created="2025-01-01T00:00:00+00:00",
        config=config.to_dict(), class_names=config.class_names, num_features=11,
        checkpoint_sha256=None, opset=17, rot_y_axis_reference=True, simplified=False,
        files={n: sha256_file(deploy_dir / n) for n in ("pts_voxel_encoder.onnx", "pts_backbone_neck_head.onnx")},
    )


def test_round_trip_and_file_checks(tmp_path: Path, tiny_config: ModelConfig) -> None:
    manifest = _manifest(tmp_path, tiny_config)
    write_manifest(manifest)
    loaded = load_manifest(tmp_path)
    assert loaded == manifest
    assert loaded.model_config() == tiny_config
    assert loaded.onnx_path("encoder") == tmp_path / "pts_voxel_encoder.onnx"
    with pytest.raises(BackendError, match="no TensorRT engine for the head; build one with: centerpoint-deploy build-engine"):
        loaded.engine_path("head")
    (tmp_path / "pts_backbone_neck_head.onnx").write_bytes(b"swapped")
    with pytest.raises(BackendError, match="pts_backbone_neck_head.onnx changed after export"):
        loaded.onnx_path("head")
    (tmp_path / "pts_voxel_encoder.onnx").unlink()
    with pytest.raises(BackendError, match="pts_voxel_encoder.onnx is listed in the manifest but missing"):
        loaded.onnx_path("encoder")


def test_engine_record_round_trip(tmp_path: Path, tiny_config: ModelConfig) -> None:
    (tmp_path / "pts_voxel_encoder.engine").write_bytes(b"plan")
    record = EngineRecord("pts_voxel_encoder.engine", sha256_file(tmp_path / "pts_voxel_encoder.engine"), "fp16",
                          {"input_features": [[1000, 32, 11], [1000, 32, 11], [4000, 32, 11]]}, "10.9.0")
    write_manifest(_manifest(tmp_path, tiny_config).with_engine("encoder", record))
    loaded = load_manifest(tmp_path)
    assert loaded.engines == {"encoder": record}
    assert loaded.engine_path("encoder") == tmp_path / "pts_voxel_encoder.engine"


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.pop("opset"), "manifest field 'opset' is missing"),
    (lambda d: d.update(opset="17"), "manifest field 'opset' = '17' has the wrong type"),
    (lambda d: d.update(rot_y_axis_reference=1), "'rot_y_axis_reference' = 1 has the wrong type"),
    (lambda d: d.update(format_version=2), "format_version 2; this tool reads version 1"),
    (lambda d: d.update(extra=1), r"unknown manifest field\(s\) \['extra'\]"),
    (lambda d: d["config"].update(voxelization={"max_voxels": 0}), "voxelization.max_voxels"),
    (lambda d: d.update(engines={"neck": {}}), "manifest engine entry 'neck' must be one of"),
])
def test_invalid_manifests(tmp_path: Path, tiny_config: ModelConfig, edit, message: str) -> None:
    data = _manifest(tmp_path, tiny_config).to_dict()
    edit(data)
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BackendError, match=message):
        load_manifest(tmp_path)


def test_missing_or_broken_manifest(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="manifest.json not found: .* is not a deploy directory"):
        load_manifest(tmp_path / "nowhere")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(BackendError, match="is not valid JSON"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(BackendError, match="must hold a JSON object, got list"):
        load_manifest(tmp_path)


def test_autoware_param_file(tmp_path: Path, tiny_config: ModelConfig) -> None:
    path = write_param_yaml(tiny_config, tmp_path)
    assert path.name == "tiny_ml_package.param.yaml"
    document = yaml.safe_load(path.read_text())
    assert document == {"/**": {"ros__parameters": {"model_params": {
        "model_params_version": "1.0.0",
        "class_names": ["CAR", "TRUCK", "BUS", "BICYCLE", "PEDESTRIAN"],
        "point_feature_size": 5,
        "max_voxel_size": 4000,
        "point_cloud_range": [-12.8, -12.8, -3.0, 12.8, 12.8, 5.0],
        "voxel_size": [0.4, 0.4, 8.0],
        "downsample_factor": 1,
        "encoder_in_feature_size": 11,
        "has_variance": False,
        "has_twist": True,
    }}}}
    assert autoware_model_params(tiny_config) == document["/**"]["ros__parameters"]["model_params"]


def test_config_mismatches(tmp_path: Path, tiny_config: ModelConfig) -> None:
    from dataclasses import replace

    from centerpoint_deploy.export.manifest import config_mismatches

    manifest = _manifest(tmp_path, tiny_config)
    assert config_mismatches(manifest, tiny_config) == []
    # Post-processing thresholds may change; the grid may not.
    relaxed = replace(tiny_config, decode=replace(tiny_config.decode, score_threshold=0.3))
    assert config_mismatches(manifest, relaxed) == []
    other = replace(tiny_config, voxelization=replace(tiny_config.voxelization, max_voxels=3000))
    assert config_mismatches(manifest, other) == ["voxelization.max_voxels: exported 4000, given 3000"]
