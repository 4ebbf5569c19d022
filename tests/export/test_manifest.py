"""deploy_metadata.yaml: round trip, every way loading it can fail, and nothing edited is believed (#15.5)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any, Callable

import onnx
import pytest
import yaml

from centerpoint_deploy.variant import VariantSpec, build_detector
from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.errors import BackendError, BundleError
from centerpoint_deploy.export.autoware_params import read_metadata, set_metadata
from centerpoint_deploy.export.manifest import (CheckRecord, EngineRecord, config_mismatches, config_sha256,
                                                load_manifest, sha256_file, write_manifest)
from centerpoint_deploy.export.onnx_export import ExportResult

METADATA = "deploy_metadata.yaml"
HEAD = "pts_backbone_neck_head.onnx"
ENCODER = "pts_voxel_encoder.onnx"


@pytest.fixture()
def bundle(plain_export: ExportResult, tmp_path: Path) -> Path:
    """A private copy of the tiny v4.1 bundle."""
    return Path(shutil.copytree(plain_export.manifest.deploy_dir, tmp_path / "bundle"))


def _edit_metadata(bundle: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    data = yaml.safe_load((bundle / METADATA).read_text())
    edit(data)
    (bundle / METADATA).write_text(yaml.safe_dump(data))


def test_round_trip_checks_and_engines(bundle: Path, tiny_config: ModelConfig) -> None:
    manifest = load_manifest(bundle)
    assert manifest.model_config() == tiny_config
    assert manifest.config_sha256 == config_sha256(tiny_config.to_dict())
    assert manifest.onnx_path("encoder") == bundle / ENCODER
    with pytest.raises(BackendError, match="no TensorRT engine for the head; build one with: centerpoint-deploy build-engine"):
        manifest.engine_path("head")
    (bundle / "pts_voxel_encoder.engine").write_bytes(b"plan")
    record = EngineRecord("pts_voxel_encoder.engine", sha256_file(bundle / "pts_voxel_encoder.engine"), "fp16",
                          {"input_features": [[1000, 32, 11], [1000, 32, 11], [4000, 32, 11]]}, "10.9.0")
    check = CheckRecord(True, "2026-12-01T00:00:00+00:00", "onnxruntime against pytorch on 2 frames", {"mAP": 0.5})
    written = manifest.with_engine("encoder", record).with_check("verification", check)
    write_manifest(written)
    loaded = load_manifest(bundle)
    assert loaded == written
    assert loaded.engine_path("encoder") == bundle / "pts_voxel_encoder.engine"
    (bundle / "pts_voxel_encoder.engine").write_bytes(b"another plan")
    with pytest.raises(BundleError, match="pts_voxel_encoder.engine changed after export"):
        load_manifest(bundle)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.pop("opset"), "field 'opset' is missing"),
    (lambda d: d.update(opset="17"), "field 'opset' = '17' has the wrong type"),
    (lambda d: d.update(rot_y_axis_reference=1), "'rot_y_axis_reference' = 1 has the wrong type"),
    (lambda d: d.update(format_version=1), "format_version 1; this tool reads version 2"),
    (lambda d: d.update(extra=1), r"unknown field\(s\) \['extra'\]"),
    (lambda d: d.update(bundle_version="v4.0"), "'bundle_version' = 'v4.0' is not 'v4.1' or 'legacy'"),
    (lambda d: d["config"]["voxelization"].update(max_voxels=0), "voxelization.max_voxels"),
    (lambda d: d.update(engines={"neck": {}}), "field 'engines' may name only"),
    (lambda d: d.update(checks={"verification": {"passed": True}}), "field 'checks.verification'"),
])
def test_invalid_metadata(bundle: Path, edit, message: str) -> None:
    _edit_metadata(bundle, edit)
    with pytest.raises(BackendError, match=message):
        load_manifest(bundle)


def test_missing_or_broken_metadata(bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="deploy_metadata.yaml not found: .* is not a deploy directory"):
        load_manifest(tmp_path / "nowhere")
    (bundle / METADATA).write_text("{not: [yaml")
    with pytest.raises(BackendError, match="is not valid YAML"):
        load_manifest(bundle)
    (bundle / METADATA).write_text("[1, 2]")
    with pytest.raises(BackendError, match="must hold a mapping, got list"):
        load_manifest(bundle)
    (bundle / METADATA).unlink()
    (bundle / "manifest.json").write_text("{}")
    with pytest.raises(BackendError, match="exported by an older centerpoint_deploy"):
        load_manifest(bundle)


# ----- #15.5: a hand-edited manifest, ONNX or parameter file is never believed -----------------

def _flip_rot(d: dict[str, Any]) -> None:
    d["rot_y_axis_reference"] = not d["rot_y_axis_reference"]


def _edit_config(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Edit the recorded config and fix its hash, as a careful hand-editor would."""
    def edit(d: dict[str, Any]) -> None:
        d["config"]["voxelization"][key] = value
        d["config_sha256"] = config_sha256(d["config"])
    return edit


def _reorder_classes(d: dict[str, Any]) -> None:
    names = d["config"]["class_names"][::-1]
    d["config"]["class_names"] = names
    d["config"]["head"]["tasks"] = [{"class_names": names}]
    d["class_names"] = names
    d["config_sha256"] = config_sha256(d["config"])


@pytest.mark.parametrize(("edit", "message"), [
    (_flip_rot, r"pts_voxel_encoder.onnx: 'metadata_props.rot_y_axis_reference' = False, deploy_metadata.yaml "
                r"'config' has True"),
    (_edit_config("voxel_size", [0.8, 0.8, 8.0]), r"pts_voxel_encoder.onnx: 'metadata_props.voxel_size' = "
                                                  r"\[0.4, 0.4, 8.0\], deploy_metadata.yaml 'config' has \[0.8, 0.8, 8.0\]"),
    (_edit_config("point_cloud_range", [-25.6, -25.6, -3.0, 25.6, 25.6, 5.0]), "'metadata_props.point_cloud_range'"),
    (_reorder_classes, "'metadata_props.class_names'"),
    (lambda d: d["config"]["voxelization"].update(max_voxels=3000), "'config' was edited after export"),
    (lambda d: d.update(trt_precision="fp16"), "'trt_precision' = 'fp32', deploy_metadata.yaml says 'fp16'"),
])
def test_edited_metadata_is_refused(bundle: Path, edit, message: str, tiny_config: ModelConfig) -> None:
    _edit_metadata(bundle, edit)
    with pytest.raises(BundleError, match=message):
        load_manifest(bundle)


def test_param_file_edited_and_rehashed_is_refused(bundle: Path) -> None:
    """An ml_package that passes the node's rules but describes another model than the ONNX files."""
    path = bundle / "ml_package.param.yaml"
    document = yaml.safe_load(path.read_text())
    document["/**"]["ros__parameters"]["model_params"]["voxel_size"] = [0.8, 0.8, 8.0]
    path.write_text(yaml.safe_dump(document))
    _edit_metadata(bundle, lambda d: d["files"].update({path.name: sha256_file(path)}))
    with pytest.raises(BundleError, match=r"ml_package.param.yaml: 'model_params.voxel_size' = \[0.8, 0.8, 8.0\], "
                                          r"the exported model has \[0.4, 0.4, 8.0\]"):
        load_manifest(bundle)


def test_edited_onnx_metadata_is_refused_even_when_rehashed(bundle: Path) -> None:
    path = bundle / HEAD
    model = onnx.load(str(path))
    set_metadata(model, {**read_metadata(model), "rot_y_axis_reference": True})
    onnx.save(model, str(path))
    with pytest.raises(BundleError, match="pts_backbone_neck_head.onnx changed after export"):
        load_manifest(bundle)
    _edit_metadata(bundle, lambda d: d["files"].update({HEAD: sha256_file(path)}))
    with pytest.raises(BundleError, match="pts_backbone_neck_head.onnx: 'metadata_props.rot_y_axis_reference' = True"):
        load_manifest(bundle)


def test_swapped_or_missing_files_are_refused(bundle: Path, tiny_config: ModelConfig) -> None:
    shutil.copy(bundle / ENCODER, bundle / HEAD)
    with pytest.raises(BundleError, match="pts_backbone_neck_head.onnx changed after export"):
        build_detector(VariantSpec.parse("onnxruntime"), tiny_config, deploy_dir=bundle)


@pytest.mark.parametrize("name", ["ml_package.param.yaml", "detection_class_remapper.param.yaml"])
def test_param_files_missing_or_edited_are_refused(bundle: Path, tiny_config: ModelConfig, name: str) -> None:
    path = bundle / name
    text = path.read_text()
    path.write_text(text.replace("0.35", "0.4").replace("0.0,", "1.0,", 1))  # still valid for the node
    with pytest.raises(BundleError, match=f"{name} changed after export"):
        build_detector(VariantSpec.parse("onnxruntime"), tiny_config, deploy_dir=bundle)
    path.unlink()
    with pytest.raises(BundleError, match=f"{name} is missing"):
        build_detector(VariantSpec.parse("onnxruntime"), tiny_config, deploy_dir=bundle)


def test_legacy_param_file_edited_is_refused(bundle: Path, tiny_config: ModelConfig, tmp_path: Path) -> None:
    from centerpoint_deploy.export.bundle import publish_bundle, staged_bundle

    with staged_bundle(tmp_path / "legacy") as stage:
        for name in (ENCODER, HEAD):
            shutil.copy(bundle / name, stage / name)
        manifest = publish_bundle(stage, tmp_path / "legacy", tiny_config, autoware_format="legacy", precision="fp32", trt_precision="fp32",
                                  opset=17, rot_y_axis_reference=False, simplified=False, checkpoint_sha256=None)
    path = tmp_path / "legacy" / "tiny_ml_package.param.yaml"
    assert sorted(manifest.files) == [HEAD, ENCODER, path.name]
    assert load_manifest(tmp_path / "legacy") == manifest
    document = yaml.safe_load(path.read_text())
    document["/**"]["ros__parameters"]["model_params"]["downsample_factor"] = 2
    path.write_text(yaml.safe_dump(document))
    _edit_metadata(tmp_path / "legacy", lambda d: d["files"].update({path.name: sha256_file(path)}))
    with pytest.raises(BundleError, match="tiny_ml_package.param.yaml: 'model_params' does not describe the exported"):
        load_manifest(tmp_path / "legacy")


def test_config_mismatches(bundle: Path, tiny_config: ModelConfig) -> None:
    manifest = load_manifest(bundle)
    assert config_mismatches(manifest, tiny_config) == []
    # Post-processing thresholds may change; the grid may not.
    relaxed = dataclasses.replace(tiny_config, decode=dataclasses.replace(tiny_config.decode, score_threshold=0.3))
    assert config_mismatches(manifest, relaxed) == []
    other = dataclasses.replace(tiny_config, voxelization=dataclasses.replace(tiny_config.voxelization, max_voxels=3000))
    assert config_mismatches(manifest, other) == ["voxelization.max_voxels: exported 4000, given 3000"]
