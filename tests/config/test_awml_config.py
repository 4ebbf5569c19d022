"""AWML / mmdet3d configs -> ModelConfig: the j6gen2 chain, its successor, and errors naming fields."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from centerpoint_deploy.config import load_config
from centerpoint_deploy.errors import ConfigError

CONFIGS = Path(__file__).parent / "fixtures/projects/CenterPoint/configs/t4dataset/Centerpoint"
BASE = CONFIGS / "second_secfpn_4xb16_121m_j6gen2_base.py"
AMP = CONFIGS / "second_secfpn_8xb16_121m_j6gen2_base_amp.py"


def test_j6gen2_base_chain_equals_preset() -> None:
    cfg = load_config(BASE)
    assert cfg.name == "second_secfpn_4xb16_121m_j6gen2_base"
    assert dataclasses.replace(cfg, name="j6gen2_base") == load_config("j6gen2_base")
    # the values the contract (§1) states, read through the _base_ chain
    assert cfg.grid_size == (760, 760, 1)
    assert cfg.points.use_dim == (0, 1, 2, 3, 4)  # from the test pipeline, not `point_use_dim = 3`
    assert cfg.points.sweeps_num == 1
    assert cfg.voxelization.max_voxels == 64000  # (train, test) -> test
    assert cfg.num_features == 11
    assert cfg.head.init_bias == -4.595 and cfg.head.final_kernel == 1  # CustomSeparateHead
    assert (cfg.head.norm_eps, cfg.head.norm_momentum) == (1e-5, 0.1)  # mmdet3d BN2d defaults
    assert (cfg.backbone.norm_eps, cfg.backbone.norm_momentum) == (1e-3, 0.01)
    assert cfg.decode.max_num == 500 and cfg.decode.score_threshold == 0.1  # from the default model
    assert cfg.nms.min_radius == (1.0,) and cfg.nms.post_max_size == 100


def test_successor_equals_preset() -> None:
    cfg = load_config(AMP)
    assert dataclasses.replace(cfg, name="j6gen2_base_amp") == load_config("j6gen2_base_amp")
    assert cfg.grid_size == (1020, 1020, 1)
    assert cfg.feature_map_shape == (510, 510)
    assert cfg.neck.upsample_strides == (0.5, 1.0, 2.0)
    assert cfg.decode.out_size_factor == 2
    assert cfg.voxelization.max_voxels == 96000
    assert cfg.voxelization.max_num_points == 32  # the _delete_d voxel layer keeps only what the child gives


def leaf(tmp_path: Path, body: str, base: Path = BASE) -> Path:
    path = tmp_path / "experiment.py"
    path.write_text(f"_base_ = [{str(base)!r}]\n{body}")
    return path


def test_unneeded_unevaluable_parts_are_skipped(tmp_path: Path) -> None:
    cfg = load_config(leaf(tmp_path, """
from my_project.pipelines import build_train_pipeline
train_pipeline = build_train_pipeline(augment=True)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
optim_wrapper = dict(optimizer=dict(lr=schedule_lr()))
"""))
    assert cfg.grid_size == (760, 760, 1)


@pytest.mark.parametrize("body, fields", [
    # a needed value that cannot be evaluated
    ("model = dict(pts_backbone=dict(layer_nums=compute_layers()))",
     ["model.pts_backbone.layer_nums", "could not be evaluated", "compute_layers"]),
    # unknown type strings list the supported ones
    ("model = dict(pts_backbone=dict(type='ResNet'))", ["model.pts_backbone.type", "'ResNet'", "SECOND"]),
    ("model = dict(pts_voxel_encoder=dict(type='HardVFE'))",
     ["model.pts_voxel_encoder.type", "BackwardPillarFeatureNet, BackwardPillarFeatureNetONNX, PillarFeatureNet"]),
    ("model = dict(pts_bbox_head=dict(separate_head=dict(type='DCNSeparateHead')))",
     ["model.pts_bbox_head.separate_head.type", "SeparateHead"]),
    # geometry
    ("v = [0.33, 0.33, 8.0]\nmodel = dict(data_preprocessor=dict(voxel_layer=dict(voxel_size=v)),"
     " pts_voxel_encoder=dict(voxel_size=v), pts_bbox_head=dict(bbox_coder=dict(voxel_size=v)))",
     ["voxelization.voxel_size", "whole number of voxels"]),
    ("model = dict(pts_voxel_encoder=dict(voxel_size=[0.2, 0.2, 8.0]))",
     ["model.pts_voxel_encoder.voxel_size", "disagrees with the voxel layer"]),
    ("model = dict(pts_middle_encoder=dict(output_shape=(512, 512)))", ["model.pts_middle_encoder.output_shape"]),
    # neck strides that do not land on out_size_factor
    ("model = dict(pts_neck=dict(upsample_strides=[1, 2, 2]))", ["decode.out_size_factor", "stride 2"]),
    ("model = dict(pts_bbox_head=dict(bbox_coder=dict(out_size_factor=2)))",
     ["model.test_cfg.pts.out_size_factor", "disagrees"]),
    # head
    ("model = dict(pts_bbox_head=dict(tasks=[dict(num_class=4, class_names=['car', 'truck', 'bus', 'bicycle', 'pedestrian'])]))",
     ["model.pts_bbox_head.tasks[0].num_class"]),
    ("class_names = ['car', 'truck']", ["'class_names'", "tasks' classes"]),
    ("model = dict(pts_bbox_head=dict(bbox_coder=dict(code_size=7)))", ["model.pts_bbox_head.bbox_coder.code_size"]),
    ("model = dict(pts_backbone=dict(conv_cfg=dict(type='Conv2d', bias=True)))", ["model.pts_backbone.conv_cfg.bias"]),
    ("model = dict(pts_voxel_encoder=dict(mode='avg'))", ["model.pts_voxel_encoder.mode", "'max'"]),
    ("model = dict(data_preprocessor=dict(voxel_layer=dict(_delete_=True, voxel_size=[0.32, 0.32, 8.0])))",
     ["model.data_preprocessor.voxel_layer.max_voxels", "required"]),
    ("test_dataloader = dict(dataset=dict(pipeline=[dict(type='LoadPointsFromFile', load_dim=5, use_dim=4)]))",
     ["voxel_encoder.in_channels", "len(points.use_dim) = 4"]),
])
def test_errors_name_the_field(tmp_path: Path, body: str, fields: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(leaf(tmp_path, body))
    for text in fields:
        assert text in str(info.value)


def test_backward_pillar_encoder_drops_z_centre(tmp_path: Path) -> None:
    cfg = load_config(leaf(tmp_path, "model = dict(pts_voxel_encoder=dict(type='BackwardPillarFeatureNet'))"))
    assert cfg.voxel_encoder.with_voxel_center_z is False
    assert cfg.num_features == 10  # 5 + 3 cluster offsets + 2 centre offsets


def test_mmdet3d_defaults_fill_left_out_arguments(tmp_path: Path) -> None:
    cfg = load_config(leaf(tmp_path, """
model = dict(
    pts_voxel_encoder=dict(_delete_=True, type="PillarFeatureNet", in_channels=5, feat_channels=[32, 32],
                           voxel_size=_base_.voxel_size, point_cloud_range=_base_.point_cloud_range),
    pts_bbox_head=dict(separate_head=dict(_delete_=True, type="SeparateHead"),
                       bbox_coder=dict(_delete_=True, type="CenterPointBBoxCoder", pc_range=_base_.point_cloud_range[:2],
                                       voxel_size=_base_.voxel_size[:2], out_size_factor=1)),
)
"""))
    assert cfg.voxel_encoder.legacy is True  # PillarFeatureNet(legacy=True) by default
    assert (cfg.voxel_encoder.norm_eps, cfg.voxel_encoder.norm_momentum) == (1e-3, 0.01)
    assert (cfg.head.init_bias, cfg.head.final_kernel, cfg.head.head_conv) == (-2.19, 1, 64)
    assert cfg.decode.max_num == 100
    assert cfg.decode.score_threshold == 0.0  # None: no score filter
    assert cfg.decode.post_center_range == (-float("inf"),) * 3 + (float("inf"),) * 3
