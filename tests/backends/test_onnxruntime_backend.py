"""OnnxRuntimeBackend on toy contract graphs: numerics, contract checks, errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from centerpoint_deploy import contract
from centerpoint_deploy.backends.onnxruntime import OnnxRuntimeBackend, ort_session
from centerpoint_deploy.cpu_features import exact_int8_kernels
from centerpoint_deploy.errors import BackendError, BackendUnavailableError

from .conftest import ToyEncoder, export_toy


def test_encoder_matches_torch_at_two_voxel_counts(encoder_onnx: Path, toy_encoder: ToyEncoder) -> None:
    with OnnxRuntimeBackend(encoder_onnx, "cpu") as backend:
        assert backend.part == "encoder"
        assert backend.input_specs[0].shape == (None, None, 11)
        for num_voxels in (5, 300):
            features = torch.randn(num_voxels, 32, 11)
            out = backend.infer({contract.ENCODER_INPUT: features})
            assert list(out) == [contract.ENCODER_OUTPUT]
            assert out[contract.ENCODER_OUTPUT].shape == (num_voxels, 1, 32)
            torch.testing.assert_close(out[contract.ENCODER_OUTPUT], toy_encoder(features), atol=1e-5, rtol=0)
            assert backend.last_inference_time is not None and backend.last_inference_time > 0


def test_head_outputs_in_contract_order(head_onnx: Path, toy_head: torch.nn.Module) -> None:
    bev = torch.randn(2, 32, 6, 10)
    with OnnxRuntimeBackend(head_onnx, "cpu", optimization="disable", intra_op_threads=1) as backend:
        assert backend.output_names == contract.HEAD_OUTPUTS
        out = backend.infer({contract.HEAD_INPUT: bev})
    for name, expected in zip(contract.HEAD_OUTPUTS, toy_head(bev)):
        torch.testing.assert_close(out[name], expected, atol=1e-5, rtol=0)
    assert [out[n].shape[1] for n in contract.HEAD_OUTPUTS] == [5, 2, 1, 3, 2, 2]


def test_wrong_input_name_names_expected_and_found(tmp_path: Path, toy_encoder: ToyEncoder) -> None:
    path = export_toy(toy_encoder, torch.randn(4, 32, 11), tmp_path / "bad.onnx", ["voxels"], ["pillar_features"],
                      {"voxels": {0: "n"}, "pillar_features": {0: "n"}})
    with pytest.raises(BackendError, match=r"voxels.*expected a single input named 'input_features'"):
        OnnxRuntimeBackend(path).load()
    with pytest.raises(BackendError, match=r"inputs are \['voxels'\], expected \['input_features'\]"):
        OnnxRuntimeBackend(path, part="encoder").load()


def test_static_voxel_axis_is_refused(tmp_path: Path, toy_encoder: ToyEncoder) -> None:
    path = export_toy(toy_encoder, torch.randn(4, 32, 11), tmp_path / "static.onnx",
                      [contract.ENCODER_INPUT], [contract.ENCODER_OUTPUT], {})
    with pytest.raises(BackendError, match="'input_features' axis 0 is fixed at 4, expected a dynamic axis"):
        OnnxRuntimeBackend(path).load()


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="does not exist"):
        OnnxRuntimeBackend(tmp_path / "nope.onnx").load()
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf at all")
    with pytest.raises(BackendError, match="not a readable ONNX model"):
        OnnxRuntimeBackend(broken).load()


def test_feed_checked_before_running(encoder_onnx: Path) -> None:
    backend = OnnxRuntimeBackend(encoder_onnx)
    with pytest.raises(BackendError, match="call load"):
        backend.infer({contract.ENCODER_INPUT: torch.zeros(3, 32, 11)})
    with backend:
        with pytest.raises(BackendError, match="dtype torch.float64"):
            backend.infer({contract.ENCODER_INPUT: torch.zeros(3, 32, 11, dtype=torch.float64)})
        with pytest.raises(BackendError, match=r"shape \[3, 32, 10\], expected \['\?', '\?', 11\]"):
            backend.infer({contract.ENCODER_INPUT: torch.zeros(3, 32, 10)})
        with pytest.raises(BackendError, match="feed has inputs"):
            backend.infer({"x": torch.zeros(3, 32, 11)})


def test_bad_arguments() -> None:
    with pytest.raises(BackendError, match="optimization 'max'"):
        OnnxRuntimeBackend("x.onnx", optimization="max")
    with pytest.raises(BackendError, match="device 'mps'"):
        OnnxRuntimeBackend("x.onnx", device="mps")
    with pytest.raises(BackendError, match="intra_op_threads = 0"):
        OnnxRuntimeBackend("x.onnx", intra_op_threads=0)
    with pytest.raises(BackendError, match="pass deterministic=False with it"):
        OnnxRuntimeBackend("x.onnx", cudnn_benchmark=True)


def test_missing_onnxruntime_is_backend_unavailable(encoder_onnx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes 'import onnxruntime' raise ImportError
    with pytest.raises(BackendUnavailableError, match="pip install onnxruntime"):
        OnnxRuntimeBackend(encoder_onnx).load()


def test_cuda_without_cuda_provider_is_backend_unavailable(encoder_onnx: Path) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(BackendUnavailableError, match="no CUDAExecutionProvider"):
        OnnxRuntimeBackend(encoder_onnx, "cuda").load()


def _cuda_ort() -> bool:
    try:
        import onnxruntime
    except ImportError:
        return False
    return torch.cuda.is_available() and "CUDAExecutionProvider" in onnxruntime.get_available_providers()


@pytest.mark.cuda
@pytest.mark.skipif(not _cuda_ort(), reason="needs a CUDA GPU and onnxruntime-gpu")
def test_cuda_iobinding_keeps_tensors_on_gpu(encoder_onnx: Path, head_onnx: Path) -> None:
    features = torch.randn(200, 32, 11)
    bev = torch.randn(1, 32, 16, 16)
    for path, name, value in ((encoder_onnx, contract.ENCODER_INPUT, features), (head_onnx, contract.HEAD_INPUT, bev)):
        with OnnxRuntimeBackend(path, "cpu") as cpu, OnnxRuntimeBackend(path, "cuda") as gpu:
            expected = cpu.infer({name: value})
            got = gpu.infer({name: value.cuda() * 1.0})  # the input is written by queued torch work
            doubled = {key: (tensor * 2).cpu() for key, tensor in got.items()}  # torch work queued after ORT's
            assert gpu.last_inference_time > 0
        for key, tensor in got.items():
            assert tensor.device.type == "cuda"
            torch.testing.assert_close(tensor.cpu(), expected[key], atol=1e-4, rtol=0)
            torch.testing.assert_close(doubled[key], 2 * expected[key], atol=2e-4, rtol=0)


def test_output_shapes_for_io_binding(tmp_path: Path, toy_head: torch.nn.Module, head_onnx: Path) -> None:
    """Output dims named like an input dim are read off the feed; others come from shape inference."""
    out_axes = {0: "batch_size", 2: "H_out", 3: "W_out"}
    path = export_toy(toy_head, torch.randn(1, 32, 8, 8), tmp_path / contract.HEAD_FILE,
                      [contract.HEAD_INPUT], list(contract.HEAD_OUTPUTS),
                      {contract.HEAD_INPUT: {0: "batch_size", 2: "H", 3: "W"},
                       **{name: out_axes for name in contract.HEAD_OUTPUTS}})
    for graph in (path, head_onnx):
        backend = OnnxRuntimeBackend(graph)
        shapes = backend._output_shapes({contract.HEAD_INPUT: (3, 32, 12, 20)})
        assert shapes == {"heatmap": (3, 5, 12, 20), "reg": (3, 2, 12, 20), "height": (3, 1, 12, 20),
                          "dim": (3, 3, 12, 20), "rot": (3, 2, 12, 20), "vel": (3, 2, 12, 20)}


def _saturating_qdq_matmul() -> bytes:
    """``y = Q(DQ(Q(x)) @ DQ(w))`` with x quantized to 255 (uint8, scale 1) and w 127 (int8, scale 1), two
    products a sum (64,770), y quantized at scale 300: 64,800 exactly; 32,700 where the int8 kernel
    clips the pair's sum to 16 bits."""
    from onnx import TensorProto, helper, numpy_helper

    values = {"xs": np.float32(1), "xz": np.uint8(0), "w": np.full((2, 1), 127, np.int8), "ws": np.float32(1),
              "wz": np.int8(0), "ys": np.float32(300), "yz": np.uint8(0)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"]),
             helper.make_node("MatMul", ["xd", "wd"], ["m"]),
             helper.make_node("QuantizeLinear", ["m", "ys", "yz"], ["mq"]),
             helper.make_node("DequantizeLinear", ["mq", "ys", "yz"], ["y"])]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in values.items()])
    # IR 8 (opset 17): an onnx newer than the onnxruntime writes a newer IR by default, which it cannot read
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


def test_int8_sessions_compute_the_graphs_own_sums_on_this_cpu() -> None:
    """On an x86 CPU without VNNI, ONNX Runtime's fused int8 kernels clip pairs of products to 16 bits;
    sessions there run QDQ groups unfused, elsewhere fused: the graph's own result either way."""
    session = ort_session(_saturating_qdq_matmul(), torch.device("cpu"))
    (y,) = session.run(None, {"x": np.full((4, 2), 255, np.float32)})
    np.testing.assert_array_equal(y, np.full((4, 1), 64800, np.float32))
    try:
        unfused = session.get_session_options().get_session_config_entry("session.disable_quant_qdq") == "1"
    except RuntimeError:  # the entry was never set (ONNX Runtime raises rather than answering empty)
        unfused = False
    assert unfused is not exact_int8_kernels()[0]
