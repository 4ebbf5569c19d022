"""Bisection: probe mapping from exporter node names, and naming a perturbed layer."""

from __future__ import annotations

import onnx
import pytest
import torch
from torch import nn

from centerpoint_deploy.errors import VerificationError
from centerpoint_deploy.preprocess import prepare_encoder_input, scatter_to_bev
from centerpoint_deploy.verify.bisect import bisect_encoder, bisect_head, names_from_reexport
from centerpoint_deploy.verify.compare import Tolerance
from centerpoint_deploy.verify.probes import find_probes, module_for_scopes, node_scopes, with_extra_outputs

from tests.verify.conftest import scaled_initializer_copy

TOL = Tolerance(atol=1e-4, rtol=1e-3)


@pytest.fixture(scope="module")
def inputs(model, config, frames):
    """Reference ``input_features [V, P, 11]`` and ``spatial_features [1, 32, 64, 64]`` of frame 0."""
    voxels, features = prepare_encoder_input([frames[0]], config)
    with torch.no_grad():
        bev = scatter_to_bev(model.encode(features), voxels.coords, 1, config.bev_shape)
    return features, bev


def test_node_scopes_parse_legacy_exporter_names():
    assert node_scopes("/pts_backbone/blocks.0/blocks.0.0/Conv") == ["pts_backbone", "blocks.0", "blocks.0.0"]
    assert node_scopes("/Sigmoid") == []
    assert node_scopes("Identity_0") is None


def test_scopes_map_to_modules_through_wrappers_and_containers():
    names = ["pts_backbone", "pts_backbone.blocks", "pts_backbone.blocks.0", "pts_backbone.blocks.0.0",
             "pts_neck.deblocks.0.0", "pts_bbox_head.task_heads.0.heatmap.0.conv", "pts_bbox_head.task_heads.1.heatmap.0.conv"]
    assert module_for_scopes(["pts_backbone", "blocks.0", "blocks.0.0"], names) == "pts_backbone.blocks.0.0"
    # A wrapper scope ("model") in front matches nothing and is skipped.
    assert module_for_scopes(["model", "pts_backbone", "blocks.0", "blocks.0.0"], names) == "pts_backbone.blocks.0.0"
    scopes = ["pts_bbox_head", "task_heads.1", "heatmap", "heatmap.0", "conv"]
    assert module_for_scopes(scopes, names) == "pts_bbox_head.task_heads.1.heatmap.0.conv"
    assert module_for_scopes(["heatmap.0", "conv"], names) is None  # task 0 or 1: ambiguous
    assert module_for_scopes([], names) is None


def test_probes_of_the_exported_head_fold_bn_into_convs_and_cover_every_stage(model, deploy_dir):
    graph = onnx.load(str(deploy_dir / "pts_backbone_neck_head.onnx"))
    probes, notes = find_probes(graph, model)
    assert notes == []
    by_module = {p.module: p for p in probes}
    # Conv + BN folded by the exporter: compared with the BN module's output.
    assert by_module["pts_backbone.blocks.1.3"].hook_module == "pts_backbone.blocks.1.4"
    assert by_module["pts_bbox_head.shared_conv.conv"].hook_module == "pts_bbox_head.shared_conv.bn"
    assert "pts_backbone.blocks.1" in by_module["pts_backbone.blocks.1.5"].aliases
    assert by_module["pts_bbox_head.task_heads.0.heatmap.1"].tensor == "heatmap"
    assert "pts_neck" in by_module
    assert [p.order for p in probes] == sorted(p.order for p in probes)
    extra = with_extra_outputs(graph, [by_module["pts_neck"].tensor])
    assert [o.name for o in extra.graph.output][-1] == by_module["pts_neck"].tensor
    assert len(graph.graph.output) == 6  # the original is untouched


def test_unperturbed_export_agrees_at_every_layer(model, deploy_dir, inputs):
    report = bisect_head(model, deploy_dir / "pts_backbone_neck_head.onnx", inputs[1], TOL)
    assert report and report.first_failure is None
    assert len(report.layers) >= 30 and all(o.passed for o in report.outputs)
    assert "agree" in report.summary


def test_one_percent_scaled_backbone_weight_is_named_as_first_divergence(model, deploy_dir, inputs, tmp_path):
    broken = scaled_initializer_copy(deploy_dir / "pts_backbone_neck_head.onnx", tmp_path / "head.onnx",
                                     "/pts_backbone/blocks.1/blocks.1.3/Conv", 1.01)
    report = bisect_head(model, broken, inputs[1], TOL)
    assert not report
    first = report.first_failure
    assert first.probe.module == "pts_backbone.blocks.1.3"
    assert first.probe.label == "pts_backbone.blocks.1.3 +BN"
    index = report.layers.index(first)
    assert all(layer.comparison for layer in report.layers[:index])
    assert not report.layers[index + 1].comparison  # the error propagates to the next layer
    assert "first diverging layer is pts_backbone.blocks.1.3" in report.summary
    assert report.to_dict()["first_failure"] == "pts_backbone.blocks.1.3 +BN"


def test_perturbed_encoder_layer_is_named(model, deploy_dir, inputs, tmp_path):
    broken = scaled_initializer_copy(deploy_dir / "pts_voxel_encoder.onnx", tmp_path / "encoder.onnx",
                                     "/pts_voxel_encoder/pfn_layers.1/linear/MatMul", 1.01)
    clean = bisect_encoder(model, deploy_dir / "pts_voxel_encoder.onnx", inputs[0], TOL)
    assert clean, clean.summary
    assert [layer.probe.module for layer in clean.layers][-1] == "pts_voxel_encoder.pfn_layers.1"
    report = bisect_encoder(model, broken, inputs[0], TOL)
    assert report.first_failure.probe.module == "pts_voxel_encoder.pfn_layers.1.linear"


def test_renamed_graph_takes_names_from_a_fresh_export_and_keeps_its_own_weights(model, deploy_dir, inputs, tmp_path):
    broken = scaled_initializer_copy(deploy_dir / "pts_backbone_neck_head.onnx", tmp_path / "head.onnx",
                                     "/pts_backbone/blocks.1/blocks.1.3/Conv", 1.01)
    graph = onnx.load(str(broken))
    for i, node in enumerate(graph.graph.node):
        node.name = f"node_{i}"
    onnx.save(graph, str(tmp_path / "renamed.onnx"))
    report = bisect_head(model, tmp_path / "renamed.onnx", inputs[1], TOL)
    assert report.first_failure.probe.module == "pts_backbone.blocks.1.3"
    assert any("fresh export" in note for note in report.notes)


def test_bisection_refuses_what_it_cannot_map(model, deploy_dir, inputs, tmp_path):
    graph = onnx.load(str(deploy_dir / "pts_backbone_neck_head.onnx"))
    for i, node in enumerate(graph.graph.node):
        node.name = f"node_{i}"
    graph.graph.node.append(onnx.helper.make_node("Identity", ["heatmap"], ["extra"], name="extra"))
    fresh = onnx.load(str(deploy_dir / "pts_backbone_neck_head.onnx"))
    with pytest.raises(VerificationError, match="do not line up"):
        names_from_reexport(graph, lambda: fresh)
    with pytest.raises(VerificationError, match="CenterPoint model"):
        bisect_head(nn.Linear(2, 2), deploy_dir / "pts_backbone_neck_head.onnx", inputs[1], TOL)
