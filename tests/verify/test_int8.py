"""INT8 Q/DQ exports: the PyTorch fake-quant reference follows them layer by layer, and a wrong scale is found."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from centerpoint_deploy.backends.pytorch import TorchEncoderBackend, TorchHeadBackend
from centerpoint_deploy.config import ModelConfig
from centerpoint_deploy.detector import Detector
from centerpoint_deploy.errors import VerificationError
from centerpoint_deploy.export.onnx_export import export_onnx
from centerpoint_deploy.export.precision.calibration import collect_calibration
from centerpoint_deploy.export.precision.convert import Int8Options
from centerpoint_deploy.verify.fake_quant import fake_quant_model, read_quantized_layers, weight_scale_mismatches
from centerpoint_deploy.verify.compare import INT8_LAYER_TOLERANCE
from centerpoint_deploy.verify.run import verify_backends
from centerpoint_deploy.verify.tolerances import verification_tolerances

from tests.verify.conftest import ort_detector

INT8, INT8_BOXES = verification_tolerances("int8")
PLANTED = "/pts_backbone/blocks.1/blocks.1.3/Conv"


@pytest.fixture(scope="session")
def int8_dir(tmp_path_factory: pytest.TempPathFactory, model, config: ModelConfig, frames) -> Path:
    """An INT8 export calibrated on the verify frames, every layer group in INT8."""
    from centerpoint_deploy.data.frame import Frame

    clouds = [Frame(f"f{i}", "s", 0, "", points.numpy(), None, np.eye(4), np.eye(4)) for i, points in enumerate(frames)]
    calibration = collect_calibration(model, config, clouds * 2)
    out = tmp_path_factory.mktemp("int8")
    export_onnx(model, config, out, precision="int8", calibration=calibration,
                int8=Int8Options(method="max", snr_budget_db=-100.0, check_frames=1))
    return out


def _graphs(directory: Path) -> list[onnx.ModelProto]:
    return [onnx.load(str(directory / name)) for name in ("pts_voxel_encoder.onnx", "pts_backbone_neck_head.onnx")]


def _fake_quant_reference(model, config: ModelConfig, directory: Path) -> Detector:
    quantized = fake_quant_model(model, _graphs(directory))
    return Detector(config, TorchEncoderBackend(quantized, config), TorchHeadBackend(quantized, config))


def test_fake_quant_pytorch_matches_the_int8_graph(model, config, int8_dir, frames) -> None:
    layers = [layer for graph in _graphs(int8_dir) for layer in read_quantized_layers(graph, model)]
    assert {layer.module for layer in layers} >= {"pts_voxel_encoder.pfn_layers.0.linear", "pts_backbone.blocks.1.3"}
    candidates = {"int8": ort_detector(config, int8_dir, False)}
    graphs = {"encoder": int8_dir / "pts_voxel_encoder.onnx", "head": int8_dir / "pts_backbone_neck_head.onnx"}
    report = verify_backends(_fake_quant_reference(model, config, int8_dir), candidates,
                             frames[:1], INT8, INT8_BOXES, int8_layers=graphs, layer_tolerance=INT8_LAYER_TOLERANCE)
    assert report, report.backends["int8"].failures()
    checks = report.backends["int8"].layer_checks
    assert {c.part for c in checks} == {"encoder", "head"} and all(c.passed for c in checks)


def test_planted_scale_error_is_caught_and_bisected_to_its_layer(model, config, int8_dir, frames, tmp_path) -> None:
    graph = onnx.load(str(int8_dir / "pts_backbone_neck_head.onnx"))
    producer = {out: node for node in graph.graph.node for out in node.output}
    conv = next(n for n in graph.graph.node if n.name == PLANTED)
    scale_name = producer[conv.input[1]].input[1]  # the weight DequantizeLinear's scale
    scale = next(i for i in graph.graph.initializer if i.name == scale_name)
    values = numpy_helper.to_array(scale).copy()
    values *= 2.0  # the node's scale off by a factor of 2
    scale.CopyFrom(numpy_helper.from_array(values, scale_name))
    broken = tmp_path / "head.onnx"
    onnx.save(graph, str(broken))

    reference = _fake_quant_reference(model, config, int8_dir)
    report = verify_backends(reference, {"broken": ort_detector(config, int8_dir, False, broken)}, frames[:1], INT8, INT8_BOXES,
                             bisect_onnx={"head": broken}, int8_layers={"head": broken},
                             layer_tolerance=INT8_LAYER_TOLERANCE)
    result = report.backends["broken"]
    assert not report and result.frames[0].encoder[0].passed
    failed = [check.module for check in result.layer_checks if not check.passed]
    assert failed == ["pts_backbone.blocks.1.3"]  # alone on its own input, only the planted layer fails
    assert min(c.comparison.snr_db for c in result.layer_checks if c.passed) > INT8_LAYER_TOLERANCE.min_snr_db
    (bisection,) = result.bisections
    assert bisection.first_failure.probe.module == "pts_backbone.blocks.1.3"
    assert all(PLANTED in line for line in weight_scale_mismatches(read_quantized_layers(graph, model),
                                                                      fake_quant_model(model, _graphs(int8_dir))))


def test_missing_qdq_scales_and_float_graphs_are_refused(model, int8_dir, deploy_dir) -> None:
    graph = onnx.load(str(int8_dir / "pts_backbone_neck_head.onnx"))
    victim = next(n for n in graph.graph.node if n.op_type == "DequantizeLinear")
    graph.graph.initializer.remove(next(i for i in graph.graph.initializer if i.name == victim.input[1]))
    with pytest.raises(VerificationError, match="Q/DQ scales are missing"):
        read_quantized_layers(graph, model)
    with pytest.raises(VerificationError, match="holds no INT8 layer"):
        fake_quant_model(model, [onnx.load(str(deploy_dir / "pts_backbone_neck_head.onnx"))])


def test_a_float_layer_reading_a_shared_quantized_tensor_is_followed(tmp_path, model, config, frames) -> None:
    """blocks.1 kept float: its first conv still reads blocks.0's output through the Q/DQ pair the
    quantizer put there for deblocks.0 (INT8), and the fake-quant reference must do the same."""
    from centerpoint_deploy.data.frame import Frame

    clouds = [Frame(f"f{i}", "s", 0, "", points.numpy(), None, np.eye(4), np.eye(4)) for i, points in enumerate(frames)]
    out = tmp_path / "int8"
    export_onnx(model, config, out, precision="int8", calibration=collect_calibration(model, config, clouds * 2),
                int8=Int8Options(method="max", snr_budget_db=-100.0, check_frames=1,
                                 exclude_groups=("pts_backbone/blocks.1",)))
    layers = {layer.module: layer for graph in _graphs(out) for layer in read_quantized_layers(graph, model)}
    shared = layers["pts_backbone.blocks.1.0"]
    assert shared.input_scale is not None and shared.weight_scale is None and not shared.int8
    assert "pts_backbone.blocks.1.3" not in layers and layers["pts_neck.deblocks.0.0"].int8
    report = verify_backends(_fake_quant_reference(model, config, out), {"int8": ort_detector(config, out, False)},
                             frames[:1], INT8, INT8_BOXES)
    assert report, report.backends["int8"].failures()
