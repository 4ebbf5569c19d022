"""The INT8 Q/DQ of an exported graph, applied to the PyTorch model as fake quantization.

:func:`read_quantized_layers` finds every weighted node of a Q/DQ graph with an input or a weight
that passes through ``DequantizeLinear`` and the module it came from (by its module-scoped node
name, :mod:`.probes`). The two are read separately: a layer the plan keeps float still reads a
quantized activation when that tensor also feeds an INT8 layer (ONNX Runtime's quantizer puts
one Q/DQ pair on a shared tensor, e.g. the output of ``blocks.0`` read by ``blocks.1.0`` and
``deblocks.0``). :func:`fake_quant_model` returns a BatchNorm-folded copy of the model that does
at the same places what the graph does:

- the layer's input activation, where the graph quantizes it:
  ``torch.fake_quantize_per_tensor_affine`` with the graph's scale and zero point (a forward
  pre-hook);
- its weight, where the graph quantizes it: ``torch.fake_quantize_per_channel_affine`` along the output channels, with
  the scales computed from the *PyTorch* weights (``max |w| / 127`` per channel, the rule the
  exporter used). The graph's own weight scales are not copied, so a wrong scale in the
  ONNX shows as a divergence at its layer, which :mod:`.bisect` then locates; those that
  differ are also listed by :func:`weight_scale_mismatches`.

The PyTorch side then follows the INT8 graph closely enough for layer-by-layer bisection.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import Tensor, nn

from centerpoint_deploy.backends.pytorch import fold_batchnorm
from centerpoint_deploy.errors import VerificationError
from centerpoint_deploy.verify.probes import module_for_scopes, node_scopes

#: Weighted ONNX ops and the torch modules they come from.
_MODULES = {"Conv": nn.Conv2d, "ConvTranspose": nn.ConvTranspose2d, "MatMul": nn.Linear, "Gemm": nn.Linear}
#: Symmetric INT8 weight range (the exporter's), activation range (QuantizeLinear's saturation).
WEIGHT_RANGE = (-127, 127)
ACTIVATION_RANGE = (-128, 127)


@dataclass(frozen=True)
class QuantizedLayer:
    """One weighted layer with a quantized input or weight (an INT8 layer has both).

    Attributes:
        node: ONNX node name.
        module: dotted name of the PyTorch module (e.g. ``pts_backbone.blocks.0.0``).
        input_scale, input_zero_point: per-tensor quantization of the layer's input (``None``: float).
        weight_scale: ``ndarray[C_out]`` the graph's per-channel weight scales (``None``: float).
        weight_axis: axis of the output channels in the *torch* weight.
    """

    node: str
    module: str
    input_scale: float | None
    input_zero_point: int | None
    weight_scale: np.ndarray | None
    weight_axis: int

    @property
    def int8(self) -> bool:
        """Input and weight quantized: the layer runs in INT8."""
        return self.input_scale is not None and self.weight_scale is not None


def _dq_params(node: onnx.NodeProto, inits: dict[str, np.ndarray], what: str) -> tuple[np.ndarray, np.ndarray, int]:
    """``(scale, zero_point, axis)`` of a DequantizeLinear node; VerificationError when missing."""
    missing = [name for name in node.input[1:3] if name not in inits]
    if len(node.input) < 2 or missing:
        raise VerificationError(f"the Q/DQ graph's {what} (DequantizeLinear '{node.name}') has no scale/zero-point "
                                f"initializer {missing or ['scale']}: the graph's Q/DQ scales are missing")
    scale = inits[node.input[1]].astype(np.float64)
    zero = inits[node.input[2]] if len(node.input) > 2 else np.zeros_like(scale, dtype=np.int8)
    if not np.isfinite(scale).all() or (scale <= 0).any():
        raise VerificationError(f"the Q/DQ graph's {what} (DequantizeLinear '{node.name}') has a non-positive or "
                                "non-finite scale")
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    return scale, zero, axis


def read_quantized_layers(graph: onnx.ModelProto, root: nn.Module) -> list[QuantizedLayer]:
    """Every weighted node of ``graph`` with a Q/DQ input or weight, mapped to its module of ``root``.

    Raises:
        VerificationError: a node's Q/DQ scales are missing, or a node maps to no module of
            ``root`` (node names without module scopes).
    """
    inits = {i.name: numpy_helper.to_array(i) for i in graph.graph.initializer}
    producer = {out: node for node in graph.graph.node for out in node.output}
    names = [n for n, _ in root.named_modules() if n]
    layers = []
    for node in graph.graph.node:
        if node.op_type not in _MODULES:
            continue
        activation, weight = (producer.get(name) for name in node.input[:2])
        quantized = [s is not None and s.op_type == "DequantizeLinear" for s in (activation, weight)]
        if not any(quantized):
            continue  # a float layer on float inputs
        act_scale = act_zero = weight_scale = None
        onnx_axis = 1 if node.op_type == "MatMul" else 0
        if quantized[0]:
            scale, zero, _ = _dq_params(activation, inits, f"input of {node.name}")
            if scale.size != 1:
                raise VerificationError(f"the input of {node.name} is quantized per channel; only per-tensor "
                                        "activations are supported")
            act_scale, act_zero = float(scale.reshape(-1)[0]), int(np.asarray(zero).reshape(-1)[0])
        if quantized[1]:
            scale, _, onnx_axis = _dq_params(weight, inits, f"weight of {node.name}")
            weight_scale = scale.reshape(-1)
        scopes = node_scopes(node.name)
        module = module_for_scopes(scopes, names) if scopes else None
        if module is None:
            raise VerificationError(f"INT8 node '{node.name}' maps to no module of the PyTorch model (its name "
                                    "carries no module scopes); fake quantization needs the exporter's node names")
        # MatMul weights are the transposed Linear weight: ONNX axis 1 = torch axis 0.
        torch_axis = 1 - onnx_axis if node.op_type == "MatMul" else onnx_axis
        layers.append(QuantizedLayer(node.name, module, act_scale, act_zero, weight_scale, torch_axis))
    return layers


def _own_weight_scale(weight: Tensor, axis: int) -> Tensor:
    """``max |w| / 127`` per channel along ``axis`` (a zero channel gets scale 1)."""
    dims = [d for d in range(weight.dim()) if d != axis]
    absmax = weight.detach().abs().amax(dim=dims).double()
    return torch.where(absmax > 0, absmax / WEIGHT_RANGE[1], torch.ones_like(absmax))


def weight_scale_mismatches(layers: Sequence[QuantizedLayer], model: nn.Module, rtol: float = 1e-3) -> list[str]:
    """Layers whose graph weight scales differ from the PyTorch weights' own (``model`` BatchNorm-folded)."""
    modules = dict(model.named_modules())
    found = []
    for layer in layers:
        if layer.weight_scale is None:
            continue
        own = _own_weight_scale(modules[layer.module].weight, layer.weight_axis).cpu().numpy()
        if own.shape != layer.weight_scale.shape:
            found.append(f"{layer.node}: {layer.weight_scale.size} weight scales for {own.size} channels")
            continue
        worst = int(np.argmax(np.abs(layer.weight_scale - own) / own))
        if abs(layer.weight_scale[worst] - own[worst]) > rtol * own[worst]:
            found.append(f"{layer.node}: channel {worst} weight scale {layer.weight_scale[worst]:.6g}, "
                         f"the weights give {own[worst]:.6g}")
    return found


def fake_quant_model(model: nn.Module, graphs: Sequence[onnx.ModelProto]) -> nn.Module:
    """A BatchNorm-folded copy of ``model`` fake-quantized like the Q/DQ ``graphs`` (encoder and/or head).

    Raises:
        VerificationError: a graph without any INT8 layer, missing scales, or a layer whose
            module is not the expected kind.
    """
    quantized = fold_batchnorm(copy.deepcopy(model).eval())
    modules = dict(quantized.named_modules())
    layers = [layer for graph in graphs for layer in read_quantized_layers(graph, quantized)]
    if not any(layer.int8 for layer in layers):
        raise VerificationError("the graph holds no INT8 layer (no DequantizeLinear feeding a Conv/MatMul): "
                                "it is not an INT8 export, or its Q/DQ nodes are missing")
    for layer in layers:
        module = modules[layer.module]
        if not isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            raise VerificationError(f"INT8 node {layer.node} maps to {layer.module}, a {type(module).__name__}")
        if layer.weight_scale is not None:
            with torch.no_grad():
                scale = _own_weight_scale(module.weight, layer.weight_axis).to(module.weight.device)
                zeros = torch.zeros(scale.shape, dtype=torch.int32, device=scale.device)
                module.weight.copy_(torch.fake_quantize_per_channel_affine(
                    module.weight, scale.float(), zeros, layer.weight_axis, *WEIGHT_RANGE))
        if layer.input_scale is not None:
            module.register_forward_pre_hook(_input_quantizer(layer.input_scale, layer.input_zero_point))
    return quantized


def _input_quantizer(scale: float, zero_point: int):  # -> a forward pre-hook
    def hook(_module: nn.Module, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        return (torch.fake_quantize_per_tensor_affine(inputs[0], scale, zero_point, *ACTIVATION_RANGE), *inputs[1:])
    return hook
