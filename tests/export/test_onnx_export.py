"""export_onnx on the tiny model: contract, numerics vs PyTorch, conventions, manifest, errors."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import onnx
import pytest
import torch
import yaml

from centerpoint_deploy import contract
from centerpoint_deploy.backends.pytorch import TorchEncoderBackend, TorchHeadBackend
from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.detector import Detector
from centerpoint_deploy.errors import BackendError, ExportError
from centerpoint_deploy.export.autoware_params import autoware_model_params, read_metadata
from centerpoint_deploy.export.manifest import load_manifest, sha256_file
from centerpoint_deploy.export.onnx_export import ExportResult, export_onnx, random_points
from centerpoint_deploy.export.trt_ops import tensorrt_op_problems
from centerpoint_deploy.preprocess import prepare_encoder_input, scatter_to_bev
from centerpoint_deploy.variant import VariantSpec, build_detector

FLOAT = onnx.TensorProto.FLOAT


def _io(value: onnx.ValueInfoProto) -> tuple[str, int, list[int | str]]:
    """(name, element type, dims with dim_param names for dynamic axes)."""
    dims = [d.dim_param if d.dim_param else d.dim_value for d in value.type.tensor_type.shape.dim]
    return value.name, value.type.tensor_type.elem_type, dims


@pytest.mark.parametrize("export", ["plain_export", "rot_export"])
def test_onnx_io_contract(export: str, request: pytest.FixtureRequest) -> None:
    """Names, order, float32 and dynamic axes as dim_param, read straight off the files."""
    result: ExportResult = request.getfixturevalue(export)
    encoder = onnx.load(str(result.encoder_path))
    assert [_io(v) for v in encoder.graph.input] == [("input_features", FLOAT, ["num_voxels", "num_max_points", 11])]
    assert [_io(v) for v in encoder.graph.output] == [("pillar_features", FLOAT, ["num_voxels", 1, 32])]
    head = onnx.load(str(result.head_path))
    assert [_io(v) for v in head.graph.input] == [("spatial_features", FLOAT, ["batch_size", 32, "H", "W"])]
    assert [_io(v) for v in head.graph.output] == [
        (name, FLOAT, ["batch_size", channels, "H", "W"])
        for name, channels in zip(contract.HEAD_OUTPUTS, (5, 2, 1, 3, 2, 2))
    ]
    assert tensorrt_op_problems(encoder) == [] and tensorrt_op_problems(head) == []


def test_post_export_check_numbers(plain_export: ExportResult, rot_export: ExportResult) -> None:
    for result in (plain_export, rot_export):
        counts = sorted(int(k.split("@")[1]) for k in result.max_abs_diff if k.startswith("pillar_features@"))
        assert len(counts) == 2 and counts[0] < counts[1]  # two voxel counts
        assert {k for k in result.max_abs_diff if k.endswith("@B2")} == {f"{n}@B2" for n in contract.HEAD_OUTPUTS}
        assert max(result.max_abs_diff.values()) <= 1e-4
    assert tensorrt_op_problems(onnx.load(str(rot_export.head_path))) == []


def _voxels(config: ModelConfig, seed: int, count: int):
    points = random_points(config, seed=seed)[:count]
    return prepare_encoder_input([points], config)


def test_onnxruntime_matches_pytorch_at_two_voxel_counts(plain_export: ExportResult, tiny_model,
                                                         tiny_config: ModelConfig) -> None:
    encoder, head, rot_reference = _pair(tiny_config, plain_export.manifest.deploy_dir)
    assert rot_reference is False
    with encoder, head, torch.no_grad():
        for seed, count in ((5, 3000), (6, 300)):
            voxels, features = _voxels(tiny_config, seed, count)
            pillars = encoder.infer({"input_features": features})["pillar_features"]
            expected = tiny_model.encode(features)
            assert pillars.shape == (voxels.num_voxels, 1, 32) and expected.abs().max() > 0.1
            torch.testing.assert_close(pillars, expected, atol=1e-4, rtol=0)
            bev = scatter_to_bev(expected, voxels.coords, 1, tiny_config.bev_shape)
            maps = head.infer({"spatial_features": bev})
            for name, reference in tiny_model.forward_dense(bev)[0].items():
                torch.testing.assert_close(maps[name], reference, atol=1e-4, rtol=0)


def _pair(config: ModelConfig, deploy_dir: Path, **kwargs):
    """``(encoder, head, rot_y_axis_reference)`` of the ONNX Runtime detector of ``deploy_dir``."""
    detector = build_detector(VariantSpec.parse("onnxruntime"), config, deploy_dir=deploy_dir, **kwargs)
    return detector.encoder, detector.head, detector.rot_y_axis_reference


def _detect(config: ModelConfig, encoder, head, rot_reference: bool, points: torch.Tensor):
    with Detector(config, encoder, head, rot_y_axis_reference=rot_reference) as detector:
        return detector(points)


def test_same_boxes_through_the_detector_in_both_conventions(plain_export: ExportResult, rot_export: ExportResult,
                                                             tiny_model, tiny_config: ModelConfig) -> None:
    points = random_points(tiny_config, seed=7)[:2500]
    reference = _detect(tiny_config, TorchEncoderBackend(tiny_model, tiny_config),
                        TorchHeadBackend(tiny_model, tiny_config), False, points)
    assert len(reference) > 10
    results = {}
    for name, result in (("plain", plain_export), ("rot", rot_export)):
        backends = _pair(tiny_config, result.manifest.deploy_dir)
        assert backends[2] is (name == "rot")
        results[name] = _detect(tiny_config, *backends, points)
    for got in results.values():
        assert torch.equal(got.labels, reference.labels)
        torch.testing.assert_close(got.boxes, reference.boxes, atol=1e-4, rtol=0)
        torch.testing.assert_close(got.scores, reference.scores, atol=1e-5, rtol=0)
    # The two conventions differ only by an exact permutation/negation: identical boxes.
    torch.testing.assert_close(results["rot"].boxes, results["plain"].boxes, atol=1e-6, rtol=0)


def test_rot_convention_of_raw_head_outputs(plain_export: ExportResult, rot_export: ExportResult,
                                            tiny_config: ModelConfig) -> None:
    bev = torch.randn(1, 32, 64, 64).relu()
    outputs = []
    for result in (plain_export, rot_export):
        _, head, _ = _pair(tiny_config, result.manifest.deploy_dir)
        with head:
            outputs.append(head.infer({"spatial_features": bev}))
    plain, rot = outputs
    torch.testing.assert_close(rot["dim"], plain["dim"][:, [1, 0, 2]], atol=1e-6, rtol=0)
    torch.testing.assert_close(rot["rot"], torch.cat([-plain["rot"][:, 1:], -plain["rot"][:, :1]], 1), atol=1e-6, rtol=0)
    torch.testing.assert_close(rot["heatmap"], plain["heatmap"], atol=1e-6, rtol=0)


def test_head_runs_at_another_bev_size(plain_export: ExportResult, tiny_model, tiny_config: ModelConfig) -> None:
    """Axes 2 and 3 of the head are dynamic: a 32 x 48 map (traced at 64 x 64) still matches PyTorch."""
    bev = torch.randn(1, 32, 32, 48).relu()
    _, head, _ = _pair(tiny_config, plain_export.manifest.deploy_dir)
    with head, torch.no_grad():
        got = head.infer({"spatial_features": bev})
        for name, expected in tiny_model.forward_dense(bev)[0].items():
            assert got[name].shape[2:] == (32, 48)
            torch.testing.assert_close(got[name], expected, atol=1e-4, rtol=0)


def test_multi_task_head_names(tiny_config: ModelConfig, tmp_path: Path) -> None:
    from centerpoint_deploy.config.schema import HeadTaskConfig
    from centerpoint_deploy.model import build_model

    config = replace(tiny_config, head=replace(tiny_config.head, tasks=(
        HeadTaskConfig(("car", "truck", "bus")), HeadTaskConfig(("bicycle", "pedestrian")))),
        nms=replace(tiny_config.nms, min_radius=(1.0, 0.5))).validate()
    result = export_onnx(build_model(config), config, tmp_path)
    head = onnx.load(str(result.head_path))
    assert [o.name for o in head.graph.output] == [f"{n}_{t}" for t in (0, 1) for n in contract.HEAD_OUTPUTS]
    assert [_io(o)[2][1] for o in head.graph.output] == [3, 2, 1, 3, 2, 2, 2, 2, 1, 3, 2, 2]


def test_manifest_param_file_and_metadata(plain_export: ExportResult, rot_export: ExportResult,
                                          tiny_config: ModelConfig, tiny_checkpoint: Path) -> None:
    deploy_dir = plain_export.manifest.deploy_dir
    manifest = load_manifest(deploy_dir)
    assert manifest == plain_export.manifest
    assert manifest.model_config() == tiny_config
    assert manifest.checkpoint_sha256 == sha256_file(tiny_checkpoint)
    assert (manifest.opset, manifest.rot_y_axis_reference, manifest.simplified, manifest.num_features) == (17, False, False, 11)
    assert manifest.class_names == ("car", "truck", "bus", "bicycle", "pedestrian")
    assert sorted(manifest.files) == ["detection_class_remapper.param.yaml", "ml_package.param.yaml",
                                      "pts_backbone_neck_head.onnx", "pts_voxel_encoder.onnx"]
    assert (manifest.bundle_version, manifest.precision, manifest.trt_precision, manifest.model_name) == \
        ("v4.1", "fp32", "fp32", "tiny")
    assert all(sha256_file(deploy_dir / name) == digest for name, digest in manifest.files.items())
    assert manifest.engines == {}
    params = yaml.safe_load((deploy_dir / "ml_package.param.yaml").read_text())["/**"]["ros__parameters"]
    assert {k: params["model_params"][k] for k in autoware_model_params(tiny_config)} == autoware_model_params(tiny_config)

    rot = load_manifest(rot_export.manifest.deploy_dir)
    assert (rot.opset, rot.rot_y_axis_reference, rot.simplified, rot.checkpoint_sha256) == (16, True, True, None)
    for path, graph in ((rot_export.encoder_path, "encoder"), (rot_export.head_path, "head")):
        assert read_metadata(onnx.load(str(path))) == {**autoware_model_params(tiny_config), "rot_y_axis_reference": True,
                            "tool": "centerpoint_deploy 0.1.0", "graph": graph}


def test_factory_refuses_other_configs_and_broken_dirs(plain_export: ExportResult, tiny_config: ModelConfig,
                                                       tmp_path: Path) -> None:
    deploy_dir = plain_export.manifest.deploy_dir
    other = replace(tiny_config, voxelization=replace(tiny_config.voxelization, max_voxels=2000))
    with pytest.raises(BackendError, match="exported from a different config: voxelization.max_voxels: exported 4000, given 2000"):
        _pair(other, deploy_dir)
    with pytest.raises(BackendError, match="needs deploy_dir"):
        _pair(tiny_config, None)
    with pytest.raises(BackendError, match="not a checkpoint"):
        _pair(tiny_config, deploy_dir, checkpoint="x.pth")
    with pytest.raises(BackendError, match="is not a deploy directory"):
        _pair(tiny_config, tmp_path)
    broken = shutil.copytree(deploy_dir, tmp_path / "copy")
    (broken / contract.HEAD_FILE).unlink()
    with pytest.raises(BackendError, match="pts_backbone_neck_head.onnx is listed in deploy_metadata.yaml but missing"):
        _pair(tiny_config, broken)
    with pytest.raises(BackendError, match="has no TensorRT engine for the encoder"):
        load_manifest(deploy_dir).engine_path("encoder")


def test_disagreement_above_atol_writes_nothing(tiny_model, tiny_config: ModelConfig, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"above atol=1e-12 \+ rtol=0 \* max\|output\|: max \|diff\| .*heatmap@B2=") as info:
        export_onnx(tiny_model, tiny_config, tmp_path / "deploy", atol=1e-12, rtol=0)
    assert "nothing written" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # no deploy directory, no staging folder left behind


def test_bad_arguments(tiny_model, tiny_config: ModelConfig, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="opset 12 is not supported; use 13-17"):
        export_onnx(tiny_model, tiny_config, tmp_path, opset=12)
    with pytest.raises(ExportError, match="checkpoint .* does not exist"):
        export_onnx(tiny_model, tiny_config, tmp_path, checkpoint=tmp_path / "missing.pth")
    outside = torch.full((100, 5), 50.0)
    with pytest.raises(ExportError, match="check_sample cannot be voxelized: .* no point inside point_cloud_range"):
        export_onnx(tiny_model, tiny_config, tmp_path, check_sample=outside)
    one_pillar = torch.zeros(100, 5)
    with pytest.raises(ExportError, match=r"check_sample gives voxel counts \[1, 1\]; need two different"):
        export_onnx(tiny_model, tiny_config, tmp_path, check_sample=one_pillar)
    with pytest.raises(ExportError, match=r"check_sample must be a \[N >= 4, 5\] point tensor"):
        export_onnx(tiny_model, tiny_config, tmp_path, check_sample=torch.zeros(10))
