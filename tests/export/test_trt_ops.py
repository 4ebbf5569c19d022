"""The static TensorRT operator check on small hand-built ONNX graphs."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from centerpoint_deploy.export.trt_ops import tensorrt_op_problems


def _model(nodes: list[onnx.NodeProto], opset: int = 17, initializers: tuple = ()) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4]),
         helper.make_tensor_value_info("w_in", TensorProto.FLOAT, [2, 2, 1, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=list(initializers),
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_supported_graph_has_no_problems() -> None:
    weight = numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["y"])]
    assert tensorrt_op_problems(_model(nodes, initializers=(weight,))) == []


def test_unsupported_foreign_and_dynamic_weight() -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w_in"], ["c"]),  # weights from a graph input
        helper.make_node("Unique", ["c"], ["u"]),
        helper.make_node("Unique", ["u"], ["u2"]),
        helper.make_node("ScatterMax", ["u2"], ["y"], domain="custom.ops"),
    ]
    problems = [str(p) for p in tensorrt_op_problems(_model(nodes, opset=11))]
    assert problems == [
        "opset (x1): opset 11 is outside the checked range 13-17",
        "Unique (x2): not supported by the TensorRT ONNX parser",
        "custom.ops::ScatterMax (x1): custom-domain operator needs a TensorRT plugin",
        "Conv (x1): weights must be an initializer",
    ]


def test_subgraphs_are_checked() -> None:
    then_branch = helper.make_graph([helper.make_node("Unique", ["x"], ["t"])], "then", [],
                                    [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    else_branch = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "else", [],
                                    [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    cond = numpy_helper.from_array(np.array(True), "cond")
    nodes = [helper.make_node("If", ["cond"], ["y"], then_branch=then_branch, else_branch=else_branch)]
    assert [str(p) for p in tensorrt_op_problems(_model(nodes, initializers=(cond,)))] == [
        "Unique (x1): not supported by the TensorRT ONNX parser"]
