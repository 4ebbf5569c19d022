"""Config validation: ranges, types without coercion, unknown AWML keys (as mmdet3d's
constructors refuse them) and sizes a machine can hold, each refused naming the field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from centerpoint_deploy.config import load_config
from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.errors import ConfigError
from tests.config.test_awml_config import leaf


def tiny_with(section: str, **values) -> dict:
    data = load_config("tiny").to_dict()
    data[section].update(values)
    return data


@pytest.mark.parametrize("section, values, field", [
    ("head", {"head_conv": 0}, "head.head_conv"),
    ("head", {"share_conv_channel": -1}, "head.share_conv_channel"),
    ("head", {"init_bias": float("nan")}, "head.init_bias"),
    ("head", {"norm_eps": -1e-5}, "head.norm_eps"),
    ("backbone", {"norm_eps": 0.0}, "backbone.norm_eps"),
    ("neck", {"norm_momentum": 1.5}, "neck.norm_momentum"),
    ("voxel_encoder", {"norm_eps": float("inf")}, "voxel_encoder.norm_eps"),
    ("points", {"sweeps_num": 10 ** 9}, "points.sweeps_num"),
    ("points", {"load_dim": 10 ** 6}, "points.load_dim"),
    ("voxelization", {"max_num_points": 10 ** 7}, "voxelization.max_num_points"),
    ("decode", {"max_num": 10 ** 9}, "decode.max_num"),
    ("nms", {"post_max_size": 10 ** 9}, "nms.post_max_size"),
    ("backbone", {"layer_nums": [1, 10 ** 6, 1]}, "backbone.layer_nums"),
])
def test_out_of_range_values_are_refused(section, values, field):
    with pytest.raises(ConfigError, match=rf"config field '{field}' = .* is invalid"):
        ModelConfig.from_dict(tiny_with(section, **values))


def test_grid_and_channels_are_bounded_by_what_a_machine_holds():
    grid = tiny_with("voxelization", point_cloud_range=[-102400.0, -102400.0, -3.0, 102400.0, 102400.0, 5.0],
                     voxel_size=[0.2, 0.2, 8.0])  # 1,024,000 x 1,024,000 cells
    with pytest.raises(ConfigError, match=r"'voxelization.voxel_size' .* the grid of 1024000 x 1024000 = "
                                          r"1048576000000 cells is larger than 67108864"):
        ModelConfig.from_dict(grid)
    with pytest.raises(ConfigError, match=r"'voxel_encoder.feat_channels' .* each in \[1, 4096\]"):
        ModelConfig.from_dict(tiny_with("voxel_encoder", feat_channels=[32, 10 ** 6]))
    with pytest.raises(ConfigError, match=r"'voxelization.max_voxels' .* must lie in \[1, 1.67772e\+07\]"):
        ModelConfig.from_dict(tiny_with("voxelization", max_voxels=10 ** 9))


def test_activations_beyond_one_tensor_are_refused():
    big = load_config("j6gen2_base").to_dict()
    big["voxelization"].update(point_cloud_range=[-409.6, -409.6, -3.0, 409.6, 409.6, 5.0], voxel_size=[0.2, 0.2, 8.0])
    big["backbone"]["out_channels"] = [4096, 4096, 4096]
    big["neck"]["in_channels"] = [4096, 4096, 4096]
    with pytest.raises(ConfigError, match=r"'backbone.out_channels' .* gives a tensor of \d+ elements on the "
                                          r"4096 x 4096 grid; allowed: at most 2147483647"):
        ModelConfig.from_dict(big)


@pytest.mark.parametrize("section, values, field, expected", [
    ("voxel_encoder", {"in_channels": 5.7}, "voxel_encoder.in_channels", "expected an integer"),
    ("voxel_encoder", {"in_channels": 5.0}, "voxel_encoder.in_channels", "expected an integer (got float; floats are not rounded)"),
    ("points", {"sweeps_num": "1"}, "points.sweeps_num", "expected an integer"),
    ("voxelization", {"voxel_size": ["0.32", 0.32, 8.0]}, "voxelization.voxel_size", "expected a number"),
    ("voxel_encoder", {"with_distance": "yes"}, "voxel_encoder.with_distance", "expected true or false"),
    ("points", {"use_dim": 5}, "points.use_dim", "expected a list of integers"),
])
def test_types_are_not_coerced(section, values, field, expected):
    with pytest.raises(ConfigError, match=rf"config field '{field}' = .* is invalid: {re.escape(expected)}"):
        ModelConfig.from_dict(tiny_with(section, **values))


def test_class_names_string_is_not_split_into_letters(tmp_path):
    data = load_config("tiny").to_dict()
    data["class_names"] = "car"
    with pytest.raises(ConfigError, match=r"config field 'class_names' = 'car' is invalid: expected a list of strings"):
        ModelConfig.from_dict(data)
    data = load_config("tiny").to_dict()
    data["head"]["tasks"] = [{"class_names": "car"}]
    with pytest.raises(ConfigError, match=r"'head.tasks\[0\].class_names' = 'car' is invalid"):
        ModelConfig.from_dict(data)


@pytest.mark.parametrize("text", ["", "# nothing\n", "{}\n"])
def test_empty_yaml_is_not_the_default_model(tmp_path, text):
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"empty\.yaml is empty"):
        load_config(path)


def test_presets_still_load_and_round_trip(tmp_path):
    for name in ("tiny", "demo", "j6gen2_base", "j6gen2_base_amp"):
        cfg = load_config(name)
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg.to_dict()))
        assert load_config(path) == cfg


@pytest.mark.parametrize("body, field, expected", [
    # typo keys: mmdet3d's constructors raise TypeError for them
    ("model = dict(pts_voxel_encoder=dict(with_distanse=True))", "model.pts_voxel_encoder.with_distanse",
     "is not an argument of PillarFeatureNet"),
    ("model = dict(pts_backbone=dict(layer_num=[1, 1, 1]))", "model.pts_backbone.layer_num", "is not an argument of SECOND"),
    ("model = dict(pts_neck=dict(upsample_stride=[1, 2, 4]))", "model.pts_neck.upsample_stride", "of SECONDFPN"),
    ("model = dict(pts_bbox_head=dict(share_conv_channels=64))", "model.pts_bbox_head.share_conv_channels",
     "of CenterHead"),
    ("model = dict(pts_bbox_head=dict(bbox_coder=dict(max_nums=5)))", "model.pts_bbox_head.bbox_coder.max_nums",
     "of CenterPointBBoxCoder"),
    ("model = dict(data_preprocessor=dict(voxel_layer=dict(max_voxel=5)))",
     "model.data_preprocessor.voxel_layer.max_voxel", "is not an argument of voxel_layer"),
    ("model = dict(pts_backbone=dict(norm_cfg=dict(type='BN', epsilon=1e-3)))", "model.pts_backbone.norm_cfg.epsilon",
     "BatchNorm norm_cfg"),
    ("model = dict(pts_voxel_encodr=dict())", "model.pts_voxel_encodr", "is not an argument of CenterPoint"),
    # wrong types: refused, never converted
    ("model = dict(data_preprocessor=dict(voxel_layer=dict(max_num_points='abc')))",
     "model.data_preprocessor.voxel_layer.max_num_points", "must be an integer (got str)"),
    ("model = dict(pts_voxel_encoder=dict(in_channels=5.7))", "model.pts_voxel_encoder.in_channels",
     "must be an integer (got float)"),
    ("model = dict(pts_bbox_head=dict(separate_head=dict(init_bias='x')))",
     "model.pts_bbox_head.separate_head.init_bias", "must be a number (got str)"),
    ("class_names = 5", "class_names", "must be a list of strings"),
    ("model = dict(pts_bbox_head=dict(tasks=[dict(num_class=1, class_names='car')]))",
     "model.pts_bbox_head.tasks[0].class_names", "must be a list of strings"),
    ("model = dict(pts_bbox_head=dict(common_heads=dict(reg=('a', 2))))", "model.pts_bbox_head.common_heads.reg",
     "must be (channels, num_conv), two integers"),
    ("model = dict(pts_bbox_head=dict(bbox_coder=dict(out_size_factor='one')))",
     "model.pts_bbox_head.bbox_coder.out_size_factor", "must be an integer (got str)"),
    ("model = dict(pts_voxel_encoder=dict(with_distance='no'))", "model.pts_voxel_encoder.with_distance",
     "must be True or False"),
    ("model = dict(pts_backbone=dict(layer_strides=[1, 2.5, 2]))", "model.pts_backbone.layer_strides",
     "must be a list of integers"),
    # ranges, through the AWML reader
    ("model = dict(pts_bbox_head=dict(separate_head=dict(head_conv=0)))", "head.head_conv", "is invalid"),
    ("model = dict(pts_backbone=dict(norm_cfg=dict(type='BN', eps=-1e-3)))", "backbone.norm_eps", "must lie in (0, 1)"),
    ("model = dict(pts_bbox_head=dict(separate_head=dict(init_bias=float('nan'))))", "head.init_bias", "finite"),
    ("test_dataloader = dict(dataset=dict(pipeline=[dict(type='LoadPointsFromFile', load_dim=5, use_dim=5), "
     "dict(type='LoadPointsFromMultiSweeps', sweeps_num=10**9, load_dim=5, use_dim=[0, 1, 2, 3, 4])]))",
     "points.sweeps_num", "is invalid"),
    ("test_dataloader = dict(dataset=dict(pipeline=[dict(type='LoadPointsFromFile', load_dim=5, use_dim=5, "
     "use_dims=3)]))", "test_dataloader.dataset.pipeline[0].use_dims", "is not an argument of LoadPointsFromFile"),
])
def test_awml_fields_are_checked_like_mmdet3d(tmp_path: Path, body: str, field: str, expected: str):
    with pytest.raises(ConfigError) as info:
        load_config(leaf(tmp_path, body))
    message = str(info.value)
    assert f"'{field}'" in message and expected in message, message


def test_separate_head_keeps_mmdet3d_leniency(tmp_path):
    """mmdet3d's SeparateHead takes **kwargs and ignores unknown keys: so do we."""
    cfg = load_config(leaf(tmp_path, "model = dict(pts_bbox_head=dict(separate_head=dict(unused_option=1)))"))
    assert cfg.head.init_bias == -4.595
