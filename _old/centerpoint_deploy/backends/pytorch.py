"""PyTorch backends: the two ONNX-contract graphs run directly on a ``CenterPoint`` module.

Both backends may share one model. ``load()`` moves it to the device in eval mode;
:meth:`Backend.infer` runs under ``torch.inference_mode`` and records the call's time
(CUDA events on a GPU, read lazily so that ``infer`` never waits for the GPU;
``perf_counter`` on the CPU).

Fast paths are opt-in through :class:`TorchOptions`; the default is strict float32 with TF32
off, the reference for verification. Process-wide switches (TF32, cuDNN benchmark) are set
only for the duration of each call and restored afterwards.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable, ContextManager

import torch
from torch import Tensor, nn

from centerpoint_deploy import contract
from centerpoint_deploy.backends.base import Backend, TensorSpec
from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.cuda_graphs import capture
from centerpoint_deploy.errors import BackendError, BackendUnavailableError
from centerpoint_deploy.model.fused_head import fuse_head_branches
from centerpoint_deploy.model.fused_neck import fuse_neck_branches
from centerpoint_deploy.model.surgery import fold_batchnorm, fuse_conv_relu
from centerpoint_deploy.numerics import torch_switches

#: ``precision`` -> dtype the network computes in (fp32 and tf32 differ in the TF32 switch only).
PRECISION_DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class TorchOptions:
    """Speed switches of the PyTorch backends (all off: the deterministic fp32 reference).

    Attributes:
        precision: ``"fp32"`` (TF32 off), ``"tf32"`` (TF32 convolutions and matmuls on CUDA),
            ``"fp16"`` or ``"bf16"`` (weights and activations in that type; inputs and
            outputs stay float32).
        channels_last: NHWC memory layout for the backbone-neck-head (tensor cores like it).
        fuse_batchnorm: fold every eval-mode BatchNorm into the convolution (or the PFN's
            linear layer) before it.
        fuse_relu: run each ``Conv2d`` followed by a ReLU as one cuDNN convolution + bias + ReLU
            kernel (:class:`~centerpoint_deploy.model.surgery.ConvReLU2d`; needs ``fuse_batchnorm``,
            so that the two are adjacent).
            Without it, a CUDA convolution with bias is three kernels: the convolution, the
            bias add and the ReLU.
        fuse_heads: run each task's branches of 1 x 1 convolutions (``final_kernel: 1``, the
            AWML j6gen2 heads) as one per-pixel MLP, on CUDA one Triton kernel
            (:func:`~centerpoint_deploy.model.fused_head.fuse_head_branches`; needs ``fuse_batchnorm``).
        fuse_neck: run the neck's ``kernel == stride`` branches (transposed convs, 1 x 1 convs)
            as matmuls writing into one concatenated channels-last map, no concatenation copy
            (:func:`~centerpoint_deploy.model.fused_neck.fuse_neck_branches`; needs ``fuse_batchnorm``).
        cudnn_benchmark: let cuDNN time its algorithms per shape (not deterministic).
        cuda_graph: capture the call in a CUDA graph and replay it (CUDA only; re-captured when
            the input shape changes, so it pays off for fixed shapes: the head always, the
            encoder in the fixed-shape pipeline).
        compile: ``torch.compile`` the network (first calls compile; not with ``cuda_graph``).
        max_autotune: compile with mode ``"max-autotune-no-cudagraphs"`` (Triton and cuDNN
            kernels timed per shape; slow to compile; needs ``compile``).
    """

    precision: str = "fp32"
    channels_last: bool = False
    fuse_batchnorm: bool = False
    fuse_relu: bool = False
    fuse_heads: bool = False
    fuse_neck: bool = False
    cudnn_benchmark: bool = False
    cuda_graph: bool = False
    compile: bool = False
    max_autotune: bool = False

    def validate(self, device: torch.device) -> "TorchOptions":
        if self.precision not in PRECISION_DTYPES:
            raise BackendError(f"precision '{self.precision}' is not one of {sorted(PRECISION_DTYPES)}")
        if self.cuda_graph and device.type != "cuda":
            raise BackendError(f"cuda_graph needs a CUDA device; got '{device}'")
        if self.cuda_graph and self.compile:
            raise BackendError("cuda_graph and compile cannot be combined; pick one")
        if self.precision == "fp16" and device.type == "cpu":
            raise BackendError("precision 'fp16' runs on CUDA only; on the CPU use 'bf16'")
        if self.fuse_relu and not self.fuse_batchnorm:
            raise BackendError("fuse_relu needs fuse_batchnorm (a BatchNorm sits between each convolution and its ReLU)")
        for flag in ("fuse_heads", "fuse_neck"):
            if getattr(self, flag) and not self.fuse_batchnorm:
                raise BackendError(f"{flag} needs fuse_batchnorm (the branches' BatchNorms are folded into their "
                                   f"convolutions)")
        if self.max_autotune and not self.compile:
            raise BackendError("max_autotune is a torch.compile mode; set compile too")
        return self

    @property
    def is_reference(self) -> bool:
        """True for the default: strict fp32, original module, no benchmarking or capture."""
        return self == TorchOptions()

    @property
    def label(self) -> str:
        """Short text for tables and backend names, e.g. ``fp16+channels_last+cuda_graph``."""
        flags = [name for name in ("channels_last", "fuse_batchnorm", "fuse_relu", "fuse_heads", "fuse_neck",
                                   "cudnn_benchmark", "cuda_graph", "compile", "max_autotune") if getattr(self, name)]
        return "+".join([self.precision, *flags])


class _CapturedCall:
    """One CUDA graph of ``run`` for one input shape; outputs are cloned out of the graph's buffers."""

    def __init__(self, run: Callable[[Tensor], dict[str, Tensor]], example: Tensor) -> None:
        self.shape = tuple(example.shape)
        self.input = example.clone()
        self.captured = capture(lambda _: run(self.input), example.device)

    def __call__(self, tensor: Tensor) -> dict[str, Tensor]:
        self.input.copy_(tensor)
        self.captured.replay()
        return {name: value.clone() for name, value in self.captured.result.items()}


class _TorchBackend(Backend):
    """Shared lifecycle, fast paths and timing of the two PyTorch graph parts."""

    kind = "pytorch"
    capturable = True

    def __init__(self, model: nn.Module, config: ModelConfig, device: torch.device | str = "cpu",
                 options: TorchOptions = TorchOptions()) -> None:
        super().__init__(device)
        self.model = model
        self.config = config
        self.options = options.validate(self.device)
        self.channels_last_input = options.channels_last
        self._network: nn.Module = model
        self._run: Callable[[Tensor], dict[str, Tensor]] = self._forward
        self._captured: _CapturedCall | None = None

    @property
    def name(self) -> str:
        suffix = "" if self.options.is_reference else f"-{self.options.label}"
        return f"{self.kind}-{self.device.type}{suffix}"

    # ----- lifecycle ---------------------------------------------------------------------------
    def _load_impl(self) -> None:
        self.model.to(self.device).eval()
        opts = self.options
        network = self.model
        if opts.precision in ("fp16", "bf16") or opts.channels_last or opts.fuse_batchnorm:
            network = copy.deepcopy(self.model)  # the shared reference model stays untouched
            if opts.fuse_batchnorm:
                fold_batchnorm(network)
            if opts.fuse_relu:
                fuse_conv_relu(network)
            if opts.fuse_heads:
                fuse_head_branches(network)
            if opts.fuse_neck:
                fuse_neck_branches(network)
            network.to(PRECISION_DTYPES[opts.precision])
            if opts.channels_last:
                network.to(memory_format=torch.channels_last)
        self._network = network
        self._run = self._forward
        if opts.compile:
            try:
                mode = "max-autotune-no-cudagraphs" if opts.max_autotune else None
                self._run = torch.compile(self._forward, dynamic=False, mode=mode)
            except RuntimeError as exc:  # no compiler toolchain / unsupported platform
                raise BackendUnavailableError(f"torch.compile is not usable here: {exc}") from exc

    def _close_impl(self) -> None:
        self._network, self._run, self._captured = self.model, self._forward, None

    def _forward(self, tensor: Tensor) -> dict[str, Tensor]:
        """The network on ``tensor`` (float32), outputs float32 by name."""
        raise NotImplementedError

    def _cast_input(self, tensor: Tensor) -> Tensor:
        dtype = PRECISION_DTYPES[self.options.precision]
        if tensor.dim() != 4:
            return tensor.to(dtype)
        layout = torch.channels_last if self.options.channels_last else torch.contiguous_format
        return tensor.to(dtype=dtype, memory_format=layout)

    def _call(self, tensor: Tensor) -> dict[str, Tensor]:
        """Run under inference mode with this backend's flags; time it without waiting for the GPU."""
        with torch.inference_mode(), self._switches():
            if self.device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                outputs = self._replay(tensor) if self.options.cuda_graph else self._run(tensor)
                end.record()
                self._timed_by(start, end)
            else:
                begin = time.perf_counter()
                outputs = self._run(tensor)
                self.last_inference_time = time.perf_counter() - begin
        return outputs

    def forward_in_capture(self, tensor: Tensor) -> dict[str, Tensor]:
        """The network (compiled when ``compile``) on ``tensor``, for a caller's own CUDA graph capture.

        No feed checks, no timing events and no graph of this backend (``cuda_graph`` is
        ignored: captures do not nest); the precision switches apply. Outputs live in the
        caller's graph memory. Load the backend first.
        """
        if not self._loaded:
            raise BackendError(f"{self.name}: call load() before forward_in_capture()")
        with torch.inference_mode(), self._switches():
            return self._run(tensor)

    def _switches(self) -> ContextManager[None]:
        """TF32 and cuDNN benchmarking as this backend's options say, for one call."""
        return torch_switches(tf32=self.options.precision == "tf32", cudnn_benchmark=self.options.cudnn_benchmark)

    def _replay(self, tensor: Tensor) -> dict[str, Tensor]:
        if self._captured is None or self._captured.shape != tuple(tensor.shape):
            self._captured = _CapturedCall(self._run, tensor)
        return self._captured(tensor)


class TorchEncoderBackend(_TorchBackend):
    """``input_features [V, P, F]`` -> ``pillar_features [V, 1, C]`` via ``model.encode``."""

    @property
    def input_specs(self) -> tuple[TensorSpec, ...]:
        shape = (None, self.config.voxelization.max_num_points, self.config.num_features)
        return (TensorSpec(contract.ENCODER_INPUT, shape),)

    @property
    def output_names(self) -> tuple[str, ...]:
        return (contract.ENCODER_OUTPUT,)

    def _forward(self, features: Tensor) -> dict[str, Tensor]:
        encoded = self._network.encode(self._cast_input(features))
        return {contract.ENCODER_OUTPUT: encoded.float()}

    def _infer_impl(self, feed: dict[str, Tensor]) -> dict[str, Tensor]:
        return self._call(feed[contract.ENCODER_INPUT])


class TorchHeadBackend(_TorchBackend):
    """``spatial_features [B, C, H, W]`` -> the six maps per task via ``model.forward_dense``.

    Output names follow :func:`contract.head_output_names` (``heatmap``, ``reg``, ``height``,
    ``dim``, ``rot``, ``vel`` for one task); H and W may differ from the config's grid.
    Outputs are float32 and contiguous (NCHW) whatever the fast path.
    """

    @property
    def input_specs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec(contract.HEAD_INPUT, (None, self.config.voxel_encoder.out_channels, None, None)),)

    @property
    def output_names(self) -> tuple[str, ...]:
        return contract.head_output_names(len(self.config.head.tasks))

    def _forward(self, bev: Tensor) -> dict[str, Tensor]:
        task_maps = self._network.forward_dense(self._cast_input(bev))
        flat = [maps[name] for maps in task_maps for name in contract.HEAD_OUTPUTS]
        return {name: value.float().contiguous() for name, value in zip(self.output_names, flat)}

    def _infer_impl(self, feed: dict[str, Tensor]) -> dict[str, Tensor]:
        return self._call(feed[contract.HEAD_INPUT])
