"""Read the inputs/outputs of an exported graph and check them against the deploy contract.

The contract (``shared/reference/centerpoint-contract.md`` §2, :mod:`centerpoint_deploy.contract`):

- encoder: ``input_features`` float32 ``[num_voxels, 32 | dynamic, F]`` →
  ``pillar_features`` float32 ``[num_voxels, 1, C]``;
- head: ``spatial_features`` float32 ``[B, C, H, W]`` → ``heatmap, reg, height, dim, rot, vel``
  (in this order, per task) float32 ``[B, c, h, w]``.

The checks are pure functions over :class:`~centerpoint_deploy.backends.base.TensorSpec`
tuples, so ONNX files and TensorRT engines are held to the same rules.
"""

from __future__ import annotations

from typing import Literal

import onnx
import torch

from centerpoint_deploy import contract
from centerpoint_deploy.backends.base import TensorSpec
from centerpoint_deploy.errors import BackendError

GraphPart = Literal["encoder", "head"]

#: ONNX ``TensorProto`` element types this package can meet, as torch dtypes.
_ONNX_DTYPES: dict[int, torch.dtype] = {
    onnx.TensorProto.FLOAT: torch.float32,
    onnx.TensorProto.FLOAT16: torch.float16,
    onnx.TensorProto.DOUBLE: torch.float64,
    onnx.TensorProto.INT32: torch.int32,
    onnx.TensorProto.INT64: torch.int64,
    onnx.TensorProto.BOOL: torch.bool,
}


def _value_info_spec(info: onnx.ValueInfoProto) -> TensorSpec:
    tensor_type = info.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim)
    dtype = _ONNX_DTYPES.get(tensor_type.elem_type)
    if dtype is None:
        type_name = onnx.TensorProto.DataType.Name(tensor_type.elem_type)
        raise BackendError(f"graph tensor '{info.name}' has element type {type_name}; "
                           f"supported: {', '.join(str(d) for d in _ONNX_DTYPES.values())}")
    return TensorSpec(info.name, dims, dtype)


def onnx_graph_io(model: onnx.ModelProto) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """``(inputs, outputs)`` of ``model`` in graph order; dynamic dims are ``None``.

    Initializers listed as graph inputs (old exporters) are not inputs.
    """
    initializers = {i.name for i in model.graph.initializer}
    inputs = tuple(_value_info_spec(i) for i in model.graph.input if i.name not in initializers)
    outputs = tuple(_value_info_spec(o) for o in model.graph.output)
    return inputs, outputs


def _describe(specs: tuple[TensorSpec, ...]) -> str:
    return ", ".join(f"{s.name}{['?' if d is None else d for d in s.shape]}" for s in specs) or "none"


def _tensor_problems(spec: TensorSpec, rank: int, static_dims: dict[int, int | None],
                     dynamic_dims: tuple[int, ...]) -> list[str]:
    """Problems of one tensor: rank, float32, dims that must be static (value or just known), dynamic."""
    shown = ["?" if d is None else d for d in spec.shape]
    if len(spec.shape) != rank:
        return [f"'{spec.name}' has rank {len(spec.shape)} {shown}, expected rank {rank}"]
    problems = []
    if spec.dtype != torch.float32:
        problems.append(f"'{spec.name}' has dtype {spec.dtype}, expected torch.float32")
    for axis, value in static_dims.items():
        got = spec.shape[axis]
        if got is None or (value is not None and got != value):
            want = value if value is not None else "a fixed size"
            problems.append(f"'{spec.name}' axis {axis} is {'dynamic' if got is None else got}, expected {want}")
    for axis in dynamic_dims:
        if spec.shape[axis] is not None:
            problems.append(f"'{spec.name}' axis {axis} is fixed at {spec.shape[axis]}, expected a dynamic axis")
    return problems


def contract_problems(part: GraphPart, inputs: tuple[TensorSpec, ...],
                      outputs: tuple[TensorSpec, ...]) -> list[str]:
    """Every way the graph I/O breaks the contract of ``part``; empty when it conforms.

    Args:
        part: ``"encoder"`` (pts_voxel_encoder) or ``"head"`` (pts_backbone_neck_head).
        inputs, outputs: the graph's tensors in graph order (``None`` = dynamic dim).
    """
    if part == "encoder":
        want_in, want_out = (contract.ENCODER_INPUT,), (contract.ENCODER_OUTPUT,)
    else:
        num_tasks = max(1, len(outputs) // len(contract.HEAD_OUTPUTS))
        want_in, want_out = (contract.HEAD_INPUT,), contract.head_output_names(num_tasks)
    got_in, got_out = tuple(s.name for s in inputs), tuple(s.name for s in outputs)
    problems = []
    if got_in != want_in:
        problems.append(f"inputs are {list(got_in)}, expected {list(want_in)}")
    if got_out != want_out:
        problems.append(f"outputs are {list(got_out)}, expected {list(want_out)} in this order")
    if problems:
        return problems
    if part == "encoder":
        # Axis 1 (points per pillar) may be dynamic or Autoware's fixed 32.
        problems += _tensor_problems(inputs[0], 3, {2: None}, (0,))
        if not problems and inputs[0].shape[1] not in (None, 32):
            problems.append(f"'{inputs[0].name}' axis 1 is {inputs[0].shape[1]}, expected dynamic or 32")
        problems += _tensor_problems(outputs[0], 3, {1: 1, 2: None}, (0,))
    else:
        problems += _tensor_problems(inputs[0], 4, {1: None}, ())
        for spec in outputs:
            problems += _tensor_problems(spec, 4, {1: None}, ())
    return problems


def describe_io(inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]) -> str:
    """One line, e.g. ``inputs: input_features[?, ?, 11]; outputs: pillar_features[?, 1, 32]``."""
    return f"inputs: {_describe(inputs)}; outputs: {_describe(outputs)}"
