"""TensorRT backend: one serialized engine (encoder or head) on a CUDA GPU.

Buffers are torch CUDA tensors; their addresses are handed to the execution context and the
engine runs on torch's current stream (``execute_async_v3``), so no pycuda is needed and
outputs feed straight into the next torch stage. ``tensorrt`` is imported only when loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

import torch
from torch import Tensor

from centerpoint_deploy.backends.base import Backend, TensorSpec
from centerpoint_deploy.errors import BackendError, BackendUnavailableError
from centerpoint_deploy.graph_io import GraphPart, contract_problems, describe_io

Shape = tuple[int, ...]


def import_tensorrt() -> ModuleType:
    """``import tensorrt`` or raise :class:`BackendUnavailableError` saying how to install it."""
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailableError(
            "TensorRT is not installed: pip install tensorrt (needs NVIDIA's index, "
            "--extra-index-url https://pypi.nvidia.com) on a machine with a CUDA GPU"
        ) from exc
    return tensorrt


@dataclass(frozen=True)
class EngineTensor:
    """One I/O tensor of an engine, as TensorRT describes it.

    Attributes:
        name: tensor name.
        is_input: True for inputs.
        shape: dims with ``None`` for dynamic ones.
        dtype: torch dtype of the tensor.
        profile: ``(min, opt, max)`` of optimization profile 0 (inputs only).
    """

    name: str
    is_input: bool
    shape: tuple[int | None, ...]
    dtype: torch.dtype
    profile: tuple[Shape, Shape, Shape] | None = None

    @property
    def spec(self) -> TensorSpec:
        return TensorSpec(self.name, self.shape, self.dtype)


def plan_bindings(tensors: Sequence[EngineTensor], feed_shapes: dict[str, Shape]) -> dict[str, Shape]:
    """Check a feed against the engine and return the input shapes to set on the context.

    Raises:
        BackendError: the feed's names differ from the engine's inputs, a rank or a fixed dim
            differs, or a dim lies outside the optimization profile (the message names the
            allowed range and how to rebuild).
    """
    inputs = [t for t in tensors if t.is_input]
    names = sorted(t.name for t in inputs)
    if sorted(feed_shapes) != names:
        raise BackendError(f"tensorrt: feed has inputs {sorted(feed_shapes)}, the engine expects {names}")
    plan = {}
    for tensor in inputs:
        shape = tuple(feed_shapes[tensor.name])
        shown = ["?" if d is None else d for d in tensor.shape]
        if len(shape) != len(tensor.shape) or any(
            want is not None and want != got for want, got in zip(tensor.shape, shape)
        ):
            raise BackendError(f"tensorrt: input '{tensor.name}' has shape {list(shape)}, the engine expects {shown}")
        if tensor.profile is not None:
            low, _, high = tensor.profile
            outside = [axis for axis, size in enumerate(shape) if not low[axis] <= size <= high[axis]]
            if outside:
                axis = outside[0]
                raise BackendError(
                    f"tensorrt: input '{tensor.name}' axis {axis} is {shape[axis]}, the engine's profile allows "
                    f"{low[axis]}..{high[axis]} (shape {list(shape)}); rebuild the engine with a wider profile")
        plan[tensor.name] = shape
    return plan


def _torch_dtype(trt: Any, dtype: Any) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
             trt.int64: torch.int64, trt.int8: torch.int8, trt.bool: torch.bool}
    if dtype not in table:
        raise BackendError(f"tensorrt: engine tensor type {dtype} is not supported")
    return table[dtype]


def describe_engine(trt: Any, engine: Any) -> list[EngineTensor]:
    """The I/O tensors of a deserialized ``trt.ICudaEngine``, in engine order."""
    tensors = []
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        profile = None
        if is_input:
            profile = tuple(tuple(s) for s in engine.get_tensor_profile_shape(name, 0))
        tensors.append(EngineTensor(
            name=name,
            is_input=is_input,
            shape=tuple(None if d < 0 else d for d in engine.get_tensor_shape(name)),
            dtype=_torch_dtype(trt, engine.get_tensor_dtype(name)),
            profile=profile,  # type: ignore[arg-type]
        ))
    return tensors


class TensorRTBackend(Backend):
    """Runs a serialized TensorRT engine built by :func:`~centerpoint_deploy.export.tensorrt_build.build_engine`.

    Args:
        engine_path: the ``.engine`` file (built by the same TensorRT version).
        device: a CUDA device.
        part: ``"encoder"`` or ``"head"``; its I/O must follow the contract.

    ``input_specs`` and ``output_names`` need the engine, so they are available after
    :meth:`load`.
    """

    kind = "tensorrt"

    def __init__(self, engine_path: Path | str, device: torch.device | str = "cuda", *,
                 part: GraphPart) -> None:
        super().__init__(device)
        if self.device.type != "cuda":
            raise BackendError(f"tensorrt backend needs a CUDA device, got '{device}'")
        if part not in ("encoder", "head"):
            raise BackendError(f"part '{part}' is not one of 'encoder', 'head'")
        self.engine_path = Path(engine_path)
        self.part = part
        self._runtime: Any = None  # the logger and runtime must outlive the engine
        self._engine: Any = None
        self._context: Any = None
        self._tensors: list[EngineTensor] = []

    @property
    def input_specs(self) -> tuple[TensorSpec, ...]:
        self._require_loaded()
        return tuple(t.spec for t in self._tensors if t.is_input)

    @property
    def output_names(self) -> tuple[str, ...]:
        self._require_loaded()
        return tuple(t.name for t in self._tensors if not t.is_input)

    def _require_loaded(self) -> None:
        if not self._tensors:
            raise BackendError(f"{self.name}: call load() before reading the engine's inputs and outputs")

    def _load_impl(self) -> None:
        if not self.engine_path.is_file():
            raise BackendError(f"TensorRT engine {self.engine_path} does not exist")
        if not torch.cuda.is_available():
            raise BackendUnavailableError("tensorrt backend needs CUDA, but torch.cuda.is_available() is False")
        trt = import_tensorrt()
        logger = trt.Logger(trt.Logger.ERROR)
        runtime = trt.Runtime(logger)
        with torch.cuda.device(self.device):
            engine = runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
            if engine is None:
                raise BackendError(f"TensorRT {trt.__version__} cannot deserialize {self.engine_path} "
                                   "(built by another TensorRT version or for another GPU? rebuild it)")
            context = engine.create_execution_context()
        tensors = describe_engine(trt, engine)
        inputs = tuple(t.spec for t in tensors if t.is_input)
        outputs = tuple(t.spec for t in tensors if not t.is_input)
        problems = contract_problems(self.part, inputs, outputs)
        if problems:
            raise BackendError(f"{self.engine_path} does not follow the {self.part} contract "
                               f"({describe_io(inputs, outputs)}): " + "; ".join(problems))
        self._runtime = (logger, runtime)
        self._engine, self._context, self._tensors = engine, context, tensors

    def _close_impl(self) -> None:
        self._context = self._engine = self._runtime = None
        self._tensors = []

    def _infer_impl(self, feed: dict[str, Tensor]) -> dict[str, Tensor]:
        inputs = {name: t.detach().to(self.device).contiguous() for name, t in feed.items()}
        plan = plan_bindings(self._tensors, {name: tuple(t.shape) for name, t in inputs.items()})
        context = self._context
        for name, shape in plan.items():
            context.set_input_shape(name, shape)
            context.set_tensor_address(name, inputs[name].data_ptr())
        outputs = {}
        for tensor in self._tensors:
            if not tensor.is_input:
                shape = tuple(context.get_tensor_shape(tensor.name))
                outputs[tensor.name] = torch.empty(shape, dtype=tensor.dtype, device=self.device)
                context.set_tensor_address(tensor.name, outputs[tensor.name].data_ptr())
        stream = torch.cuda.current_stream(self.device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(stream)
        if not context.execute_async_v3(stream.cuda_stream):
            raise BackendError(f"{self.name}: TensorRT execution failed for input shapes {plan}")
        end.record(stream)
        end.synchronize()
        self.last_inference_time = start.elapsed_time(end) / 1000.0
        return outputs
