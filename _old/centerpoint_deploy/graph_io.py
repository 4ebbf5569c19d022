"""The tensor contract: a graph input/output (:class:`TensorSpec`), read from ONNX and checked against the deploy contract.

The contract (``shared/reference/centerpoint-contract.md`` §2, :mod:`centerpoint_deploy.contract`):

- encoder: ``input_features`` float32 ``[num_voxels, 32 | dynamic, F]`` →
  ``pillar_features`` float32 ``[num_voxels, 1, C]``;
- head: ``spatial_features`` float32 ``[B, C, H, W]`` → ``heatmap, reg, height, dim, rot, vel``
  (in this order, per task) float32 ``[B, c, h, w]``.

The checks are pure functions over :class:`TensorSpec` tuples, so ONNX files and TensorRT
engines are held to the same rules. This module sits below both ``backends`` (which check feeds
against it) and ``export`` (which checks what it wrote).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from centerpoint_deploy import contract
from centerpoint_deploy.errors import BackendError

if TYPE_CHECKING:
    import onnx

GraphPart = Literal["encoder", "head"]


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (``None`` for a dynamic axis) and dtype of one graph input or output."""

    name: str
    shape: tuple[int | None, ...]
    dtype: torch.dtype = torch.float32

    def check(self, tensor: Tensor, backend: str) -> None:
        """Raise :class:`BackendError` when ``tensor`` does not fit this spec."""
        if not isinstance(tensor, Tensor):
            raise BackendError(f"{backend}: input '{self.name}' must be a torch.Tensor, got {type(tensor).__name__}")
        if tensor.dtype != self.dtype:
            raise BackendError(f"{backend}: input '{self.name}' has dtype {tensor.dtype}, expected {self.dtype}")
        if tensor.dim() != len(self.shape) or any(
            want is not None and want != got for want, got in zip(self.shape, tensor.shape)
        ):
            shown = ["?" if s is None else s for s in self.shape]
            raise BackendError(f"{backend}: input '{self.name}' has shape {list(tensor.shape)}, expected {shown}")

def _onnx_dtypes() -> dict[int, torch.dtype]:
    """ONNX ``TensorProto`` element types this package can meet, as torch dtypes (``onnx`` imported when read)."""
    import onnx

    proto = onnx.TensorProto
    return {proto.FLOAT: torch.float32, proto.FLOAT16: torch.float16, proto.DOUBLE: torch.float64,
            proto.INT32: torch.int32, proto.INT64: torch.int64, proto.BOOL: torch.bool}


def _value_info_spec(info: "onnx.ValueInfoProto", dtypes: dict[int, torch.dtype]) -> TensorSpec:
    import onnx

    tensor_type = info.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim)
    dtype = dtypes.get(tensor_type.elem_type)
    if dtype is None:
        type_name = onnx.TensorProto.DataType.Name(tensor_type.elem_type)
        raise BackendError(f"graph tensor '{info.name}' has element type {type_name}; "
                           f"supported: {', '.join(str(d) for d in dtypes.values())}")
    return TensorSpec(info.name, dims, dtype)


def onnx_graph_io(model: "onnx.ModelProto") -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """``(inputs, outputs)`` of ``model`` in graph order; dynamic dims are ``None``.

    Initializers listed as graph inputs (old exporters) are not inputs.
    """
    initializers = {i.name for i in model.graph.initializer}
    dtypes = _onnx_dtypes()
    inputs = tuple(_value_info_spec(i, dtypes) for i in model.graph.input if i.name not in initializers)
    outputs = tuple(_value_info_spec(o, dtypes) for o in model.graph.output)
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
