"""Static check that an ONNX graph only uses what TensorRT's ONNX parser can build.

The operator list is the "Y" rows of onnx-tensorrt's ``docs/operators.md`` for TensorRT 10
(default ONNX domain), restricted to operators that exist in opsets 13-17. The check runs
without TensorRT, so an export on a CPU machine already tells whether an engine can be built.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import onnx

#: Opsets the operator list below was written for.
SUPPORTED_OPSETS = range(13, 18)

#: Default-domain ONNX operators TensorRT 10's ONNX parser builds (opsets 13-17).
TENSORRT_OPS: frozenset[str] = frozenset({
    "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan", "Atanh",
    "AveragePool", "BatchNormalization", "BlackmanWindow", "Cast", "CastLike", "Ceil", "Celu",
    "Clip", "Concat", "Constant", "ConstantOfShape", "Conv", "ConvTranspose", "Cos", "Cosh",
    "CumSum", "DepthToSpace", "DequantizeLinear", "Div", "Dropout", "Einsum", "Elu", "Equal",
    "Erf", "Exp", "Expand", "EyeLike", "Flatten", "Floor", "GRU", "Gather", "GatherElements",
    "GatherND", "Gemm", "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool", "Greater",
    "GreaterOrEqual", "GridSample", "HammingWindow", "HannWindow", "HardSigmoid", "HardSwish",
    "Hardmax", "Identity", "If", "InstanceNormalization", "IsInf", "IsNaN", "LRN", "LSTM",
    "LayerNormalization", "LeakyRelu", "Less", "LessOrEqual", "Log", "LogSoftmax", "Loop",
    "LpNormalization", "LpPool", "MatMul", "Max", "MaxPool", "Mean",
    "MeanVarianceNormalization", "Min", "Mod", "Mul", "Neg", "NonMaxSuppression", "NonZero",
    "Not", "OneHot", "Or", "PRelu", "Pad", "Pow", "QuantizeLinear", "RNN", "RandomNormal",
    "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Range", "Reciprocal", "ReduceL1",
    "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
    "ReduceProd", "ReduceSum", "ReduceSumSquare", "Relu", "Reshape", "Resize",
    "ReverseSequence", "RoiAlign", "Round", "Scan", "ScatterElements", "ScatterND", "Selu",
    "Shape", "Shrink", "Sigmoid", "Sign", "Sin", "Sinh", "Size", "Slice", "Softmax", "Softplus",
    "Softsign", "SpaceToDepth", "Split", "Sqrt", "Squeeze", "Sub", "Sum", "Tan", "Tanh",
    "ThresholdedRelu", "Tile", "TopK", "Transpose", "Trilu", "Unsqueeze", "Where", "Xor",
})

#: Operators whose weight input (index 1) must be an initializer or Constant for TensorRT.
_WEIGHT_FROM_INITIALIZER = frozenset({"Conv", "ConvTranspose"})


@dataclass(frozen=True)
class OpProblem:
    """One reason TensorRT would refuse a graph.

    Attributes:
        op_type: the ONNX operator (or ``"opset"`` for an opset outside the checked range).
        count: how many nodes have this problem.
        reason: what is wrong, in words.
    """

    op_type: str
    count: int
    reason: str

    def __str__(self) -> str:
        return f"{self.op_type} (x{self.count}): {self.reason}"


def tensorrt_op_problems(model: onnx.ModelProto) -> list[OpProblem]:
    """Everything in ``model`` outside what TensorRT 10's ONNX parser supports; empty if buildable.

    Checks the default-domain opset, every node's domain and operator (including nodes inside
    subgraphs of If/Loop/Scan), and that Conv/ConvTranspose weights are initializers.
    """
    problems: list[OpProblem] = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset not in SUPPORTED_OPSETS:
        problems.append(OpProblem("opset", 1, f"opset {opset} is outside the checked range "
                                              f"{SUPPORTED_OPSETS.start}-{SUPPORTED_OPSETS.stop - 1}"))
    unsupported: Counter[str] = Counter()
    foreign: Counter[str] = Counter()
    dynamic_weights: Counter[str] = Counter()
    for graph in _graphs(model.graph):
        constants = {i.name for i in graph.initializer}
        constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
        for node in graph.node:
            if node.domain not in ("", "ai.onnx"):
                foreign[f"{node.domain}::{node.op_type}"] += 1
            elif node.op_type not in TENSORRT_OPS:
                unsupported[node.op_type] += 1
            elif node.op_type in _WEIGHT_FROM_INITIALIZER and (
                len(node.input) < 2 or node.input[1] not in constants
            ):
                dynamic_weights[node.op_type] += 1
    problems += [OpProblem(op, n, "not supported by the TensorRT ONNX parser") for op, n in sorted(unsupported.items())]
    problems += [OpProblem(op, n, "custom-domain operator needs a TensorRT plugin") for op, n in sorted(foreign.items())]
    problems += [OpProblem(op, n, "weights must be an initializer") for op, n in sorted(dynamic_weights.items())]
    return problems


def _graphs(graph: onnx.GraphProto) -> list[onnx.GraphProto]:
    """``graph`` and, depth first, every subgraph held in node attributes."""
    found = [graph]
    for node in graph.node:
        for attr in node.attribute:
            subgraphs = list(attr.graphs) + ([attr.g] if attr.HasField("g") else [])
            for sub in subgraphs:
                found += _graphs(sub)
    return found
