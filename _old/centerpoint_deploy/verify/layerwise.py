"""INT8 layers judged one at a time on the graph's own inputs (teacher-forced).

Run end to end, a correct INT8 graph and its fake-quantized PyTorch reference drift apart: an
activation that lands one quantization step away in one layer (a rounding tie decided by float
summation order) moves every later layer, and through 20-odd INT8 layers the head outputs end
20-40 dB apart (docs/precision.md). A scale error in one layer can hide inside that drift. So
each INT8 layer is also run alone: the PyTorch module (fake-quantized, :mod:`.fake_quant`) is fed
the very tensor the ONNX node reads, and its output is compared with the node's. Ties then no
longer compound, a correct layer agrees to its own rounding, and a wrong scale stands out at its
layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import onnx
import torch
from torch import Tensor, nn

from centerpoint_deploy.verify.bisect import run_onnx_probes
from centerpoint_deploy.verify.compare import TensorComparison, Tolerance, compare_tensors
from centerpoint_deploy.verify.fake_quant import read_quantized_layers


@dataclass(frozen=True)
class LayerCheck:
    """One INT8 layer run alone on the ONNX node's own input.

    Attributes:
        part: ``encoder`` or ``head``.
        node: the ONNX node.
        module: the PyTorch module (dotted name).
        comparison: PyTorch module output against the node's output.
    """

    part: str
    node: str
    module: str
    comparison: TensorComparison

    @property
    def passed(self) -> bool:
        return self.comparison.passed

    def to_dict(self) -> dict[str, Any]:
        return {"part": self.part, "node": self.node, "module": self.module, **self.comparison.to_dict()}


def int8_layer_checks(model: nn.Module, graph: onnx.ModelProto, part: str, feed: dict[str, Tensor],
                      tol: Tolerance, device: torch.device | str = "cpu") -> list[LayerCheck]:
    """Every INT8 layer of ``graph`` (input and weight quantized) run alone, in graph order.

    Args:
        model: the fake-quantized PyTorch model (:func:`~.fake_quant.fake_quant_model`) whose
            module names the graph's node scopes refer to.
        graph: the deployed Q/DQ graph.
        part: which graph, for the report.
        feed: the graph's input ``{name: tensor}`` (e.g. the reference run's ``spatial_features``).
        tol: the allowance of each layer's output (an SNR bound is what separates rounding
            from a wrong scale; see the module doc).
        device: where ONNX Runtime runs.
    """
    layers = [layer for layer in read_quantized_layers(graph, model) if layer.int8]
    nodes = {node.name: node for node in graph.graph.node}
    tensors = [name for layer in layers for name in (nodes[layer.node].input[0], nodes[layer.node].output[0])]
    onnx_tensors = run_onnx_probes(graph, feed, tensors, torch.device(device))
    modules = dict(model.named_modules())
    checks = []
    with torch.no_grad():
        for layer in layers:
            node = nodes[layer.node]
            module = modules[layer.module]
            weight = module.weight
            inputs = onnx_tensors[node.input[0]].to(device=weight.device, dtype=weight.dtype)
            output = module(inputs)  # its pre-hook quantizes the already quantized input: a no-op
            if node.op_type == "MatMul" and getattr(module, "bias", None) is not None:
                output = output - module.bias  # the graph adds a Linear's bias in a node of its own
            output = output.float().cpu()
            checks.append(LayerCheck(part, layer.node, layer.module,
                                     compare_tensors(layer.module, output, onnx_tensors[node.output[0]], tol)))
    return checks
