"""ONNX Runtime backend: one exported graph (encoder or head) on CPU or CUDA.

Reproducibility settings (all explicit constructor arguments):

- ``deterministic=True`` sets ``SessionOptions.use_deterministic_compute`` and, on CUDA,
  ``cudnn_conv_algo_search="DEFAULT"`` (a fixed algorithm); ``False`` picks cuDNN's
  heuristic choice (``"HEURISTIC"``), or with ``cudnn_benchmark=True`` times every algorithm
  per shape at the first run (``"EXHAUSTIVE"``; faster for the fp32 j6gen2 head on an H100,
  much slower in fp16 on an H200 trial: measure).
- ``optimization="all"`` (``ORT_ENABLE_ALL``, what a deployment uses) by default; graph
  fusions move results by float rounding only (well inside 1e-4 on CenterPoint). Pass
  ``"disable"`` to run the graph node by node.
- ``tf32=False`` keeps CUDA convolutions and matmuls in strict fp32.
- ``prefer_nhwc=True`` (CUDA) asks the provider for its NHWC kernels (``prefer_nhwc``: the
  layout transformer moves convolutions to channels-last, which cuDNN's fp16 tensor-core
  kernels want). On an H200 the fp16 j6gen2 head took 6.9 ms with it against 9.0 ms without
  (heuristic search); the fp32 head was slower with it (39.7 against 33.9 ms), so it is a
  variant flag (``onnxruntime:fp16+channels_last``), not a default, and applies to the head:
  an fp16 encoder session with it aborted the process in onnxruntime-gpu 1.31.1
  ("terminate called without an active exception").
- INT8 graphs on an x86 CPU without VNNI run their QDQ groups unfused (session option
  ``session.disable_quant_qdq``): ONNX Runtime's int8 kernels there clip pairs of products
  to 16 bits, so their results are not the graph's
  (:func:`~centerpoint_deploy.cpu_features.int8_sums_exact`); elsewhere they are fused.

On CUDA, inputs and outputs stay on the GPU: torch tensors are bound with ``IOBinding``
by their device pointers, and ONNX Runtime runs on a CUDA stream of the backend's own
(``user_compute_stream``) that waits for the caller's torch stream (no host synchronisation
before a run) and is waited for by it. A run still returns only when its kernels are done:
ONNX Runtime's end-of-run synchronisation stays on, because with it off (run option
``disable_synchronize_execution_providers``) onnxruntime-gpu 1.31 aborted the process when a
session whose convolution had taken cuDNN's fallback path was destroyed (``cudaFreeHost``
failing in its allocator; seen on an H100). ``onnxruntime`` is imported only when a backend
is loaded.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import ModuleType
from typing import Any

import onnx
import torch
from torch import Tensor

from centerpoint_deploy import contract
from centerpoint_deploy.backends.base import Backend, TensorSpec
from centerpoint_deploy.cpu_features import exact_int8_kernels
from centerpoint_deploy.errors import BackendError, BackendUnavailableError
from centerpoint_deploy.graph_io import GraphPart, contract_problems, describe_io, onnx_graph_io

#: ``optimization`` argument -> name of the ``onnxruntime.GraphOptimizationLevel`` member.
OPTIMIZATION_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}

_PART_BY_INPUT = {contract.ENCODER_INPUT: "encoder", contract.HEAD_INPUT: "head"}


def import_onnxruntime() -> ModuleType:
    """``import onnxruntime`` or raise :class:`BackendUnavailableError` saying how to install it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailableError(
            "onnxruntime is not installed: pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA)"
        ) from exc
    return onnxruntime


def require_cuda_provider() -> None:
    """Raise :class:`BackendUnavailableError` unless this onnxruntime has its CUDA execution provider."""
    available = import_onnxruntime().get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise BackendUnavailableError(
            f"onnxruntime has no CUDAExecutionProvider here (available: {available}); "
            "install onnxruntime-gpu matching your CUDA, or use device='cpu'")


def ort_session(model: Path | bytes, device: torch.device, *, deterministic: bool = True, optimization: str = "all",
                intra_op_threads: int | None = None, tf32: bool = False, cudnn_benchmark: bool = False,
                prefer_nhwc: bool = False, stream: torch.cuda.Stream | None = None) -> Any:
    """An ONNX Runtime ``InferenceSession`` of ``model`` (a file, or serialized bytes) on ``device``: the one
    place sessions are made (settings as :class:`OnnxRuntimeBackend` documents them).

    Raises:
        BackendUnavailableError: no onnxruntime, or CUDA asked for and not usable.
        BackendError: onnxruntime cannot load the graph.
    """
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATION_LEVELS[optimization])
    options.use_deterministic_compute = deterministic
    options.log_severity_level = 3  # errors only: backends never log
    if device.type == "cpu" and not exact_int8_kernels()[0]:
        # QDQ groups run as written (dequantize, float operator, quantize), not as int8 kernels that
        # clip their sums on this CPU: the graph's own arithmetic, as TensorRT computes it
        options.add_session_config_entry("session.disable_quant_qdq", "1")
    if intra_op_threads is not None:
        options.intra_op_num_threads = intra_op_threads
    providers: list[Any] = ["CPUExecutionProvider"]
    if device.type == "cuda":
        require_cuda_provider()
        cuda_options: dict[str, Any] = {
            "device_id": device.index or 0,
            "cudnn_conv_algo_search": "DEFAULT" if deterministic else "EXHAUSTIVE" if cudnn_benchmark else "HEURISTIC",
            "use_tf32": int(tf32),
            "prefer_nhwc": int(prefer_nhwc),
        }
        if stream is not None:
            cuda_options["user_compute_stream"] = str(stream.cuda_stream)
        providers = [("CUDAExecutionProvider", cuda_options), "CPUExecutionProvider"]
    source = str(model) if isinstance(model, Path) else model
    shown = model if isinstance(model, Path) else "the graph"
    try:
        session = ort.InferenceSession(source, sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph / RuntimeException types
        raise BackendError(f"onnxruntime cannot load {shown}: {exc}") from exc
    if device.type == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
        raise BackendUnavailableError(f"onnxruntime did not enable CUDA for {shown} "
                                      f"(session providers: {session.get_providers()})")
    return session


class OnnxRuntimeBackend(Backend):
    """Runs ``pts_voxel_encoder.onnx`` or ``pts_backbone_neck_head.onnx`` with ONNX Runtime.

    Args:
        onnx_path: the ONNX file.
        device: ``"cpu"`` or ``"cuda"`` / ``"cuda:N"`` (needs onnxruntime-gpu).
        part: ``"encoder"`` or ``"head"``; ``None`` infers it from the graph's input name.
        deterministic: reproducible kernels (see module doc).
        optimization: one of :data:`OPTIMIZATION_LEVELS`.
        intra_op_threads: CPU threads per operator; ``None`` keeps ONNX Runtime's default.
        tf32: allow TF32 math on CUDA (Ampere and newer).
        cudnn_benchmark: time cuDNN's convolution algorithms per shape (needs ``deterministic=False``).
        prefer_nhwc: the CUDA provider's channels-last kernels (see module doc; CUDA only).

    The graph's inputs and outputs are read from the file and must follow the contract
    (:func:`centerpoint_deploy.graph_io.contract_problems`); otherwise
    :class:`BackendError` names what was expected and what was found.
    """

    kind = "onnxruntime"

    def __init__(self, onnx_path: Path | str, device: torch.device | str = "cpu", *,
                 part: GraphPart | None = None, deterministic: bool = True,
                 optimization: str = "all", intra_op_threads: int | None = None,
                 tf32: bool = False, cudnn_benchmark: bool = False, prefer_nhwc: bool = False) -> None:
        super().__init__(device)
        if self.device.type not in ("cpu", "cuda"):
            raise BackendError(f"onnxruntime backend device '{device}' is not supported; use 'cpu' or 'cuda[:N]'")
        if optimization not in OPTIMIZATION_LEVELS:
            raise BackendError(f"optimization '{optimization}' is not one of {sorted(OPTIMIZATION_LEVELS)}")
        if part not in (None, "encoder", "head"):
            raise BackendError(f"part '{part}' is not one of 'encoder', 'head'")
        if deterministic and cudnn_benchmark:
            raise BackendError("cudnn_benchmark times cuDNN algorithms per shape, which is not deterministic; "
                               "pass deterministic=False with it")
        if prefer_nhwc and self.device.type != "cuda":
            raise BackendError("prefer_nhwc is an option of ONNX Runtime's CUDA provider; this backend runs on "
                               f"'{self.device}'")
        if intra_op_threads is not None and intra_op_threads < 1:
            raise BackendError(f"intra_op_threads = {intra_op_threads} must be >= 1 (or None for the default)")
        self.onnx_path = Path(onnx_path)
        self.part = part
        self.deterministic = deterministic
        self.optimization = optimization
        self.intra_op_threads = intra_op_threads
        self.tf32 = tf32
        self.cudnn_benchmark = cudnn_benchmark
        self.prefer_nhwc = prefer_nhwc
        self._graph: onnx.ModelProto | None = None
        self._io: tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]] | None = None
        self._session: Any = None
        self._stream: torch.cuda.Stream | None = None
        self._shape_cache: dict[tuple[tuple[int, ...], ...], dict[str, tuple[int, ...]]] = {}

    # ----- description -----------------------------------------------------------------
    def _graph_io(self) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        """Read and contract-check the graph's I/O once (reading the file, not running it)."""
        if self._io is None:
            if not self.onnx_path.is_file():
                raise BackendError(f"ONNX file {self.onnx_path} does not exist")
            try:
                graph = onnx.load(str(self.onnx_path))
            except Exception as exc:  # onnx raises DecodeError / ValueError / OSError
                raise BackendError(f"{self.onnx_path} is not a readable ONNX model: {exc}") from exc
            inputs, outputs = onnx_graph_io(graph)
            part = self.part or (_PART_BY_INPUT.get(inputs[0].name) if len(inputs) == 1 else None)
            if part is None:
                raise BackendError(f"{self.onnx_path} has {describe_io(inputs, outputs)}; expected a single input "
                                   f"named '{contract.ENCODER_INPUT}' (encoder) or '{contract.HEAD_INPUT}' (head)")
            problems = contract_problems(part, inputs, outputs)
            if problems:
                raise BackendError(f"{self.onnx_path} does not follow the {part} contract: " + "; ".join(problems))
            self.part, self._graph, self._io = part, graph, (inputs, outputs)
        return self._io

    @property
    def providers(self) -> tuple[str, ...] | None:
        """The session's execution providers, first the one that runs the graph (None before :meth:`load`)."""
        return tuple(self._session.get_providers()) if self._session is not None else None

    @property
    def input_specs(self) -> tuple[TensorSpec, ...]:
        return self._graph_io()[0]

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self._graph_io()[1])

    # ----- lifecycle -------------------------------------------------------------------
    def _load_impl(self) -> None:
        self._graph_io()
        if self.device.type == "cuda":
            require_cuda_provider()
            self._stream = torch.cuda.Stream(self.device)
        session = ort_session(self.onnx_path, self.device, deterministic=self.deterministic,
                              optimization=self.optimization, intra_op_threads=self.intra_op_threads, tf32=self.tf32,
                              cudnn_benchmark=self.cudnn_benchmark, prefer_nhwc=self.prefer_nhwc,
                              stream=self._stream)
        self._session = session

    def _close_impl(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()  # queued runs still use the session's memory
        self._session = self._stream = None
        self._shape_cache.clear()

    # ----- inference -------------------------------------------------------------------
    def _infer_impl(self, feed: dict[str, Tensor]) -> dict[str, Tensor]:
        if self.device.type == "cpu":
            arrays = {name: t.detach().cpu().contiguous().numpy() for name, t in feed.items()}
            start = time.perf_counter()
            results = self._session.run(list(self.output_names), arrays)
            self.last_inference_time = time.perf_counter() - start
            return {name: torch.from_numpy(r) for name, r in zip(self.output_names, results)}
        return self._infer_cuda(feed)

    def _infer_cuda(self, feed: dict[str, Tensor]) -> dict[str, Tensor]:
        """Bind torch CUDA tensors as ORT inputs/outputs so nothing leaves the GPU."""
        inputs = {name: t.detach().to(self.device).contiguous() for name, t in feed.items()}
        shapes = self._output_shapes({name: tuple(t.shape) for name, t in inputs.items()})
        outputs = {
            spec.name: torch.empty(shapes[spec.name], dtype=spec.dtype, device=self.device)
            for spec in self._graph_io()[1]
        }
        binding = self._session.io_binding()
        index = self.device.index or 0
        for name, tensor in {**inputs, **outputs}.items():
            bind = binding.bind_input if name in inputs else binding.bind_output
            bind(name, "cuda", index, _numpy_dtype(tensor.dtype), list(tensor.shape), tensor.data_ptr())
        # ORT runs on self._stream: it starts after the caller's queued work (which writes the
        # inputs), and the caller's later work waits for it.
        caller, stream = torch.cuda.current_stream(self.device), self._stream
        stream.wait_stream(caller)
        for tensor in (*inputs.values(), *outputs.values()):
            tensor.record_stream(stream)  # the allocator must not hand their memory out before ORT is done
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(stream)
        self._session.run_with_iobinding(binding)  # returns once ORT's stream is done
        end.record(stream)
        self._timed_by(start, end)
        caller.wait_stream(stream)
        return outputs

    def _output_shapes(self, input_shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        """Concrete output shapes for ``input_shapes``.

        Output dims named like an input dim (``num_voxels``, ``batch_size``) take that input's
        size; anything else comes from ONNX shape inference on the graph with the inputs fixed,
        cached per input shape (the head's BEV size rarely changes).
        """
        inputs, outputs = self._graph_io()
        by_symbol = _symbol_sizes(self._graph, input_shapes)
        resolved = {o.name: _resolve(self._graph, o.name, by_symbol) for o in outputs}
        if all(shape is not None for shape in resolved.values()):
            return resolved  # type: ignore[return-value]
        key = tuple(input_shapes[s.name] for s in inputs)
        if key not in self._shape_cache:
            self._shape_cache[key] = _inferred_output_shapes(self._graph, input_shapes)
        return self._shape_cache[key]


def _numpy_dtype(dtype: torch.dtype) -> type:
    """The numpy scalar type (``np.float32``) IOBinding expects for a torch dtype."""
    return torch.empty(0, dtype=dtype).numpy().dtype.type


def _dims(graph: onnx.ModelProto, name: str, outputs: bool) -> list[onnx.TensorShapeProto.Dimension]:
    values = graph.graph.output if outputs else graph.graph.input
    return list(next(v for v in values if v.name == name).type.tensor_type.shape.dim)


def _symbol_sizes(graph: onnx.ModelProto, input_shapes: dict[str, tuple[int, ...]]) -> dict[str, int]:
    """``dim_param`` name -> size, read off the inputs' concrete shapes."""
    sizes = {}
    for name, shape in input_shapes.items():
        for dim, size in zip(_dims(graph, name, outputs=False), shape):
            if dim.dim_param:
                sizes[dim.dim_param] = size
    return sizes


def _resolve(graph: onnx.ModelProto, output: str, by_symbol: dict[str, int]) -> tuple[int, ...] | None:
    shape = []
    for dim in _dims(graph, output, outputs=True):
        if dim.HasField("dim_value"):
            shape.append(dim.dim_value)
        elif dim.dim_param in by_symbol:
            shape.append(by_symbol[dim.dim_param])
        else:
            return None
    return tuple(shape)


def _inferred_output_shapes(graph: onnx.ModelProto, input_shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    fixed = onnx.ModelProto()
    fixed.CopyFrom(graph)
    for value in fixed.graph.input:
        if value.name in input_shapes:
            for dim, size in zip(value.type.tensor_type.shape.dim, input_shapes[value.name]):
                dim.Clear()
                dim.dim_value = size
    for value in fixed.graph.output:
        value.type.tensor_type.ClearField("shape")
    inferred = onnx.shape_inference.infer_shapes(fixed, data_prop=True)
    shapes = {}
    for value in inferred.graph.output:
        dims = value.type.tensor_type.shape.dim
        if not dims or any(not d.HasField("dim_value") for d in dims):
            raise BackendError(f"cannot work out the shape of output '{value.name}' for inputs {input_shapes}; "
                               "run this graph on device='cpu'")
        shapes[value.name] = tuple(d.dim_value for d in dims)
    return shapes
