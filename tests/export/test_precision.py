"""Reduced-precision export: fp16 casts and INT8 Q/DQ written into the ONNX from calibration frames."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml
from onnx import helper, numpy_helper

from centerpoint_deploy import contract
from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.errors import BackendError, BundleError, ExportError
from centerpoint_deploy.export.manifest import MANIFEST_FILE, load_manifest, sha256_file
from centerpoint_deploy.export.onnx_export import _compare_with_pytorch, _sample_voxels, export_onnx, random_points
from centerpoint_deploy.export.graphs import EncoderGraph, HeadGraph
from centerpoint_deploy.export.precision.calibration import (CalibrationSet, check_classes, check_frame_count,
                                                               collect_calibration)
from centerpoint_deploy.export.precision.fp16 import FP16_SAFE_MAX, to_fp16
from centerpoint_deploy.export.precision.convert import Int8Options
from centerpoint_deploy.export.precision.int8 import check_method, mse_thresholds, quantized_layers
from centerpoint_deploy.export.precision.plan import PLAN_FILE, PlanRecord, load_plan
from centerpoint_deploy.export.precision.sensitivity import detection_snr, layer_group
from centerpoint_deploy.preprocess import scatter_to_bev


@pytest.fixture(scope="session")
def calib_frames(tmp_path_factory: pytest.TempPathFactory, tiny_config: ModelConfig):
    """Four frames of one generated scene (16-beam sensor), opened for the tiny model."""
    from centerpoint_deploy.data import open_dataset
    from centerpoint_deploy.data.synthetic import LidarConfig, generate_dataset

    root = tmp_path_factory.mktemp("calib")
    generate_dataset(root, num_scenes=1, frames_per_scene=4, seed=5, sensor=LidarConfig(beams=16, columns=360))
    frames = open_dataset(root, class_names=tiny_config.class_names)
    return [frames[i] for i in range(len(frames))]


@pytest.fixture(scope="session")
def calibration(tiny_model, tiny_config: ModelConfig, calib_frames) -> CalibrationSet:
    return collect_calibration(tiny_model.eval(), tiny_config, calib_frames)


@pytest.fixture(scope="session")
def int8_export(tmp_path_factory: pytest.TempPathFactory, tiny_model, tiny_config: ModelConfig, calibration):
    return export_onnx(tiny_model, tiny_config, tmp_path_factory.mktemp("int8"), precision="int8",
                       calibration=calibration)


def _float_io(graph: onnx.ModelProto) -> bool:
    return all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in [*graph.graph.input, *graph.graph.output])


def test_calibration_inputs_are_the_detectors_own(calibration: CalibrationSet, tiny_model, tiny_config) -> None:
    assert len(calibration) == 4 and len(set(calibration.frame_sha256)) == 4
    features = calibration.encoder_inputs[0]
    assert features.dim() == 3 and features.shape[1:] == (tiny_config.voxelization.max_num_points, tiny_config.num_features)
    bev = calibration.head_input(0)
    assert bev.shape == (1, tiny_config.voxel_encoder.feat_channels[-1], *tiny_config.bev_shape)
    # the BEV map holds the encoder's pillar features of the same frame: as many non-empty cells as pillars
    assert int((bev.abs().sum(1) > 0).sum()) <= features.shape[0] and float(bev.abs().sum()) > 0
    # only pillar features are kept; the head's feeds are scattered when read, and equal the maps
    feeds = calibration.feeds("head")
    assert len(feeds) == 4 and len(list(feeds)) == 4 and len(feeds[1:3]) == 2
    np.testing.assert_array_equal(feeds[-1][contract.HEAD_INPUT], calibration.head_input(3).numpy())
    with pytest.raises(IndexError):
        feeds[4]


def test_int8_export_writes_symmetric_per_channel_qdq(int8_export) -> None:
    manifest = load_manifest(int8_export.manifest.deploy_dir)
    assert manifest.precision == "int8" and PLAN_FILE in manifest.files
    for part in ("encoder", "head"):
        graph = onnx.load(str(manifest.onnx_path(part)))
        ops = [n.op_type for n in graph.graph.node]
        assert _float_io(graph) and "BatchNormalization" not in ops  # BN folded before export
        assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > ops.count("QuantizeLinear")
        inits = {i.name: numpy_helper.to_array(i) for i in graph.graph.initializer}
        for node in graph.graph.node:
            if node.op_type == "DequantizeLinear":
                scale, zero = inits[node.input[1]], inits[node.input[2]]
                assert zero.dtype == np.int8 and not zero.any() and (scale > 0).all()
                if node.input[0] in inits:  # a weight: one scale per output channel
                    axis = next(a.i for a in node.attribute if a.name == "axis")
                    assert scale.size == inits[node.input[0]].shape[axis]
    plan = load_plan(manifest.deploy_dir)
    head = plan.part("head")
    assert plan.method == "max" and len(plan.calibration_sha256) == 4
    assert head.sensitivity and head.snr_db and min(head.snr_db.values()) >= plan.snr_budget_db
    assert set(head.quantized_nodes).isdisjoint(head.float_nodes)


def test_int8_graph_runs_close_to_fp32(int8_export, calibration: CalibrationSet, tiny_model, tiny_config) -> None:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(int8_export.head_path), providers=["CPUExecutionProvider"])
    bev = calibration.head_input(1)
    got = session.run(None, {contract.HEAD_INPUT: bev.numpy()})
    with torch.no_grad():
        expected = HeadGraph(tiny_model.eval())(bev)
    heatmap = 0
    cosine = torch.nn.functional.cosine_similarity(torch.from_numpy(got[heatmap]).flatten(), expected[heatmap].flatten(), 0)
    assert cosine > 0.99


def test_fp16_export_keeps_float32_io_and_overflowing_nodes(tmp_path: Path, tiny_model, tiny_config, calibration) -> None:
    result = export_onnx(tiny_model, tiny_config, tmp_path, precision="fp16", calibration=calibration)
    graph = onnx.load(str(result.head_path))
    assert _float_io(graph) and any(i.data_type == onnx.TensorProto.FLOAT16 for i in graph.graph.initializer)
    assert load_manifest(tmp_path).precision == "fp16" and result.plan.trt_precision == "fp16"
    assert min(result.plan.part("head").snr_db.values()) > 40

    # a hand-built graph whose middle node overflows fp16 on the calibration input keeps it fp32
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    nodes = [helper.make_node("Mul", ["x", "big"], ["h"], name="/blow/Mul"),
             helper.make_node("Mul", ["h", "small"], ["y"], name="/back/Mul")]
    inits = [numpy_helper.from_array(np.full((1, 4), 1e3, np.float32), "big"),
             numpy_helper.from_array(np.full((1, 4), 1e-3, np.float32), "small")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)])
    conversion = to_fp16(model, [{"x": np.full((1, 4), 100.0, np.float32)}])
    assert conversion.kept_fp32 == ("/blow/Mul",) and conversion.peaks["/blow/Mul"] > FP16_SAFE_MAX
    assert to_fp16(model, [{"x": np.ones((1, 4), np.float32)}]).kept_fp32 == ()


def test_self_check_scales_with_output_magnitude_and_catches_a_1001_weight_scaling(
        tmp_path: Path, tiny_model, tiny_config: ModelConfig) -> None:
    """Large outputs pass with float32 noise; a 1.001 scaling of one layer's weights still fails."""
    model = copy.deepcopy(tiny_model).eval()
    with torch.no_grad():  # head outputs of tens, as the genuine j6gen2 weights give
        model.pts_bbox_head.task_heads[0].heatmap[-1].weight.mul_(300.0)
    result = export_onnx(model, tiny_config, tmp_path)
    assert max(result.max_abs_diff.values()) > 1e-6

    features, coords = _sample_voxels(random_points(tiny_config), tiny_config)
    encoder, head = EncoderGraph(model).eval(), HeadGraph(model).eval()
    with torch.no_grad():
        bev = scatter_to_bev(encoder(features), coords, 2, tiny_config.bev_shape)
        graph = onnx.load(str(result.head_path))
        node = [n for n in graph.graph.node if n.op_type == "Conv" and "heatmap" in n.name][-1]
        weight = next(i for i in graph.graph.initializer if i.name == node.input[1])
        weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.001, weight.name))
        onnx.save(graph, str(result.head_path))
        with pytest.raises(ExportError, match=r"heatmap@B2=.*allowed"):
            _compare_with_pytorch(encoder, head, tmp_path, features, coords, bev, 1e-4, 2e-5)


def test_bad_calibration_input_is_one_error(calib_frames, tiny_model, tiny_config, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="too few"):
        check_frame_count(2, 100)
    with pytest.raises(ExportError, match="more frames than the dataset holds"):
        check_frame_count(256, 20)
    unlabeled = [copy.copy(f) for f in calib_frames]
    for frame in unlabeled:
        object.__setattr__(frame, "gt", copy.copy(frame.gt))
        object.__setattr__(frame.gt, "labels", frame.gt.labels[:0])
    with pytest.raises(ExportError, match="classes do not match"):
        check_classes(unlabeled, tiny_config.class_names)
    with pytest.raises(ExportError, match="calibration method 'kl' is not one of"):
        check_method("kl")
    with pytest.raises(ExportError, match="int8 export needs calibration frames"):
        export_onnx(tiny_model, tiny_config, tmp_path, precision="int8")
    assert not (tmp_path / "deploy_metadata.yaml").exists()


def test_mse_threshold_clips_a_rare_outlier() -> None:
    edges = np.linspace(0, 100, 101, dtype=np.float32)
    counts = np.zeros(100, np.int64)
    counts[:10] = 1_000_000  # mass below 10
    counts[99] = 1  # one value near 100
    threshold = mse_thresholds({"t": (counts, edges)})["t"]
    assert 5 < threshold < 50


def test_layer_groups() -> None:
    assert layer_group("/pts_backbone/blocks.1/blocks.1.3/Conv") == "pts_backbone/blocks.1"
    assert layer_group("/pts_bbox_head/task_heads.0/heatmap/heatmap.0/heatmap.0.0/Conv") == \
        "pts_bbox_head/task_heads.0/heatmap"
    assert layer_group("/pts_voxel_encoder/pfn_layers.0/linear/MatMul") == "pts_voxel_encoder/pfn_layers.0"


def test_detection_snr_counts_box_maps_only_where_fp32_detects() -> None:
    logits = np.full((1, 2, 4, 4), -10.0, np.float32)
    logits[0, 1, 2, 2] = 3.0  # one detection
    reg = np.zeros((1, 2, 4, 4), np.float32)
    reg[0, :, 2, 2] = 1.0
    noisy = reg + 5.0  # large errors everywhere ...
    noisy[0, :, 2, 2] = 1.01  # ... but 1 % where the box is
    snr = detection_snr([{"heatmap": logits, "reg": reg}], [{"heatmap": logits, "reg": noisy}], 0.1)
    assert snr["heatmap"] == float("inf") and snr["reg"] == pytest.approx(40.0, abs=0.1)


def _plant_outlier_channel(model: torch.nn.Module) -> torch.nn.Module:
    """Scale one channel of ``blocks.0``'s first BN by 1000 and its consumer's weights by 1/1000.

    fp32 outputs are unchanged (ReLU is positively homogeneous); the second conv's per-tensor
    INT8 input scale is set by the huge channel, which rounds the other 15 channels to zero.
    """
    planted = copy.deepcopy(model).eval()
    block = planted.pts_backbone.blocks[0]
    with torch.no_grad():
        block[1].weight[0] *= 1000.0
        block[1].bias[0] *= 1000.0
        block[3].weight[:, 0] /= 1000.0
    return planted


def test_scan_keeps_a_planted_sensitive_layer_float(tmp_path: Path, tiny_model, tiny_config, calib_frames) -> None:
    planted = _plant_outlier_channel(tiny_model)
    result = export_onnx(planted, tiny_config, tmp_path, precision="int8",
                         calibration=collect_calibration(planted, tiny_config, calib_frames),
                         int8=Int8Options(method="max", snr_budget_db=40.0, check_frames=2))
    head = result.plan.part("head")
    first, second = head.sensitivity[:2]
    assert first.group == "pts_backbone/blocks.0" and first.worst_snr_db < second.worst_snr_db - 20
    assert head.excluded_groups == ("pts_backbone/blocks.0",)
    assert min(head.snr_db.values()) >= 40.0 and head.int8_share > 0.8


def test_precision_plan_is_recorded_in_the_metadata(int8_export, calibration: CalibrationSet, tmp_path: Path) -> None:
    directory = int8_export.manifest.deploy_dir
    manifest = load_manifest(directory)
    record, plan = manifest.precision_plan, load_plan(directory)
    assert record == PlanRecord.of(plan) and record.precision == "int8" and record.method == "max"
    assert record.calibration_frames == 4 and record.calibration_digest == calibration.digest
    assert record.int8_layers["head"] == len(plan.part("head").quantized_nodes)
    assert record.head_int8_share == plan.part("head").int8_share
    assert record.kept_float["head"] == plan.part("head").excluded_groups
    written = yaml.safe_load((directory / MANIFEST_FILE).read_text())["precision_plan"]
    assert written["snr_budget_db"] == plan.snr_budget_db and written["head_int8_share"] == round(record.head_int8_share, 4)

    older = tmp_path / "older"  # written before the field existed: still read (the plan stays in its hashed file)
    shutil.copytree(directory, older)
    data = yaml.safe_load((older / MANIFEST_FILE).read_text())
    del data["precision_plan"]
    (older / MANIFEST_FILE).write_text(yaml.safe_dump(data, sort_keys=False))
    assert load_manifest(older).precision_plan is None and load_plan(older) == plan


@pytest.mark.parametrize("key, value, error, message", [
    ("method", "mse", BundleError, "edited after export"),
    ("kept_float", {"encoder": ["pts_voxel_encoder/pfn_layers.0"], "head": []}, BundleError, "edited after export"),
    ("calibration_digest", "0" * 64, BundleError, "edited after export"),
    ("map_drop", 0.0001, BundleError, "edited after export"),
    ("map_budget", 0.0025, BundleError, "edited after export"),
    ("precision", "fp16", BundleError, "'precision' says 'int8'"),
    ("head_int8_share", 0.5, BackendError, "head_int8_share"),
])
def test_an_edited_plan_in_the_metadata_is_refused(int8_export, tmp_path: Path, key, value, error, message) -> None:
    edited = tmp_path / "edited"
    shutil.copytree(int8_export.manifest.deploy_dir, edited)
    data = yaml.safe_load((edited / MANIFEST_FILE).read_text())
    data["precision_plan"][key] = value
    (edited / MANIFEST_FILE).write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(error, match=message):
        load_manifest(edited)


def test_a_graph_without_the_plans_int8_layers_is_refused(int8_export, tmp_path: Path) -> None:
    """A head graph whose Q/DQ inputs were dropped (sha256 re-recorded): the plan's INT8 count does not hold."""
    bundle = tmp_path / "bundle"
    shutil.copytree(int8_export.manifest.deploy_dir, bundle)
    path = bundle / contract.HEAD_FILE
    graph = onnx.load(str(path))
    node = next(n for n in graph.graph.node if n.name in quantized_layers(graph))
    producer = {out: n for n in graph.graph.node for out in n.output}
    node.input[1] = producer[node.input[1]].input[0]  # the weight read unquantized (an int8 initializer)
    onnx.save(graph, str(path))
    data = yaml.safe_load((bundle / MANIFEST_FILE).read_text())
    data["files"][contract.HEAD_FILE] = sha256_file(path)
    (bundle / MANIFEST_FILE).write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(BundleError, match="INT8 layers"):
        load_manifest(bundle)


def test_missing_qdq_scales_are_refused(int8_export) -> None:
    graph = onnx.load(str(int8_export.head_path))
    dq = next(n for n in graph.graph.node if n.op_type == "DequantizeLinear")
    graph.graph.initializer.remove(next(i for i in graph.graph.initializer if i.name == dq.input[1]))
    with pytest.raises(ExportError, match="Q/DQ scales are missing"):
        quantized_layers(graph)


def test_fp32_export_records_no_plan(plain_export) -> None:
    assert load_manifest(plain_export.manifest.deploy_dir).precision_plan is None


def test_a_plan_record_without_the_map_fields_is_read(int8_export) -> None:
    """Records written before the mAP-driven plan have no map_budget / map_drop: read as chosen by SNR."""
    record = load_manifest(int8_export.manifest.deploy_dir).precision_plan
    data = record.to_dict()
    del data["map_budget"], data["map_drop"]
    assert PlanRecord.from_dict(data) == record and record.map_budget is None and record.map_drop is None
    with pytest.raises(ExportError, match="precision_plan must be a mapping"):
        PlanRecord.from_dict({**data, "unknown": 1})
