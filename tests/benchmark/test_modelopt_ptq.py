"""The pure parts of benchmarks/modelopt_ptq.py: its calibration reader, ModelOpt's exclusion
patterns, the kept-float groups, and the Q/DQ summary and scale comparison of both weight layouts.

None of it imports ModelOpt (which patches ``onnxruntime.quantization`` in the running process, so
it is kept out of the test process); the ModelOpt run itself is the benchmark's.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

_SCRIPT = Path(__file__).parents[2] / "benchmarks" / "modelopt_ptq.py"
_spec = importlib.util.spec_from_file_location("modelopt_ptq", _SCRIPT)
ptq = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ptq)


def _conv_graph(weight_layout: str) -> onnx.ModelProto:
    """x -> Q/DQ -> /a/b/Conv (INT8, per-channel weight) -> /c/d/Conv (float).

    ``weight_layout``: ``"int8"`` (INT8 initializer -> DQ, onnxruntime.quantization's) or
    ``"pair"`` (float initializer -> Q -> DQ, ModelOpt's).
    """
    w = np.ones((4, 3, 1, 1), np.float32)
    inits = [numpy_helper.from_array(np.float32(0.1), "x_scale"), numpy_helper.from_array(np.int8(0), "x_zero"),
             numpy_helper.from_array(np.full(4, 0.01, np.float32), "w_scale"),
             numpy_helper.from_array(np.zeros(4, np.int8), "w_zero"),
             numpy_helper.from_array(np.ones((2, 4, 1, 1), np.float32), "w2")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["xq"], name="x_Q"),
             helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xdq"], name="x_DQ")]
    if weight_layout == "int8":
        inits.append(numpy_helper.from_array(np.ones((4, 3, 1, 1), np.int8), "w_q"))
    else:
        inits.append(numpy_helper.from_array(w, "w"))
        nodes.append(helper.make_node("QuantizeLinear", ["w", "w_scale", "w_zero"], ["w_q"], name="w_Q", axis=0))
    nodes += [helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["wdq"], name="w_DQ", axis=0),
              helper.make_node("Conv", ["xdq", "wdq"], ["y"], name="/a/b/Conv"),
              helper.make_node("Conv", ["y", "w2"], ["z"], name="/c/d/Conv")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 2, 2])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 2, 2, 2])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


@pytest.mark.parametrize("layout, key, q_count", [("int8", "int8_initializer", 1), ("pair", "float_qdq_pair", 2)])
def test_qdq_summary_reads_both_weight_layouts(layout: str, key: str, q_count: int) -> None:
    summary = ptq.qdq_summary(_conv_graph(layout))
    assert (summary["quantize_linear"], summary["dequantize_linear"]) == (q_count, 2)
    assert summary["int8_layers"] == {"Conv": 1} and summary["float_layers"] == {"Conv": 1}
    assert summary["weight_dq"] == {key: 1, "per_channel": 1, "axes": {"0": 1}}
    assert summary["zero_points"] == {"dtypes": ["int8"], "all_zero": True}
    assert summary["activation_scales"] == 1 and summary["q_consumers"] == {"Conv": 1}
    assert summary["layer_outputs_quantized"] == [] and summary["opset"] == 19


def test_kept_float_nodes_maps_groups_to_each_graphs_layers_and_refuses_unknown_ones() -> None:
    graphs = {"encoder": _conv_graph("int8"), "head": _conv_graph("pair")}
    assert ptq.kept_float_nodes(graphs, ["c/d"]) == {"encoder": ["/c/d/Conv"], "head": ["/c/d/Conv"]}
    with pytest.raises(ValueError, match="do not exist"):
        ptq.kept_float_nodes(graphs, ["pts_backbone/blocks.9"])


def test_exclusion_patterns_match_exactly_their_node() -> None:
    names = ["/pts_backbone/blocks.0/blocks.0.0/Conv", "/pts_backbone/blocks.0/blocks.0.0/Conv_1",
             "/pts_backbone/blocks.0/blocksX0.0/Conv"]
    (pattern,) = ptq.exclusion_patterns(names[:1])
    assert [n for n in names if re.match(pattern, n)] == names[:1]  # ModelOpt matches with re.match


def test_feed_reader_rewinds_and_ends_with_none() -> None:
    feeds = [{"x": np.zeros(1)}, {"x": np.ones(1)}]
    reader = ptq.FeedReader(feeds)
    assert reader.get_first() is feeds[0]
    assert reader.get_next() is feeds[0] and reader.get_next() is feeds[1] and reader.get_next() is None
    reader.rewind()
    assert reader.get_next() is feeds[0]
    with pytest.raises(ValueError):
        ptq.FeedReader([])


def test_compare_scales_sees_equal_scales_across_layouts_and_a_changed_one() -> None:
    same = ptq.compare_scales(_conv_graph("int8"), _conv_graph("pair"))
    assert same == {"layers_in_both": 1, "only_in_first": [], "only_in_second": [],
                    "activation_scale_max_rel_diff": 0.0, "weight_scale_max_rel_diff": 0.0}
    changed = _conv_graph("pair")
    scale = next(i for i in changed.graph.initializer if i.name == "w_scale")
    scale.CopyFrom(numpy_helper.from_array(np.full(4, 0.02, np.float32), "w_scale"))
    assert ptq.compare_scales(_conv_graph("int8"), changed)["weight_scale_max_rel_diff"] == pytest.approx(0.5)
