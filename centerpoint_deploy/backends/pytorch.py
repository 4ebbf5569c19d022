"""PyTorch backends: the two ONNX-contract graphs run directly on a ``CenterPoint`` module.

Both backends may share one model. ``load()`` moves it to the device in eval mode;
:meth:`Backend.infer` runs under ``torch.inference_mode`` and records the call's time
(CUDA events on a GPU, ``perf_counter`` on the CPU).
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch import Tensor, nn

from centerpoint_deploy import contract
from centerpoint_deploy.backends.base import Backend, TensorSpec
from centerpoint_deploy.config.schema import ModelConfig


class _TorchBackend(Backend):
    """Shared lifecycle and timing of the two PyTorch graph parts."""

    kind = "pytorch"

    def __init__(self, model: nn.Module, config: ModelConfig, device: torch.device | str = "cpu") -> None:
        super().__init__(device)
        self.model = model
        self.config = config

    def _load_impl(self) -> None:
        self.model.to(self.device).eval()

    def _timed(self, run: Callable[[], dict[str, Tensor]]) -> dict[str, Tensor]:
        """Run ``run`` under inference mode and store its duration in seconds."""
        with torch.inference_mode():
            if self.device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                outputs = run()
                end.record()
                end.synchronize()
                self.last_inference_time = start.elapsed_time(end) / 1000.0
            else:
                begin = time.perf_counter()
                outputs = run()
                self.last_inference_time = time.perf_counter() - begin
        return outputs


class TorchEncoderBackend(_TorchBackend):
    """``input_features [V, P, F]`` -> ``pillar_features [V, 1, C]`` via ``model.encode``."""

    @property
    def input_specs(self) -> tuple[TensorSpec, ...]:
        shape = (None, self.config.voxelization.max_num_points, self.config.num_features)
        return (TensorSpec(contract.ENCODER_INPUT, shape),)

    @property
    def output_names(self) -> tuple[str, ...]:
        return (contract.ENCODER_OUTPUT,)

    def _infer_impl(self, feed: dict[str, Tensor]) -> dict[str, Tensor]:
        features = feed[contract.ENCODER_INPUT]
        return self._timed(lambda: {contract.ENCODER_OUTPUT: self.model.encode(features)})


class TorchHeadBackend(_TorchBackend):
    """``spatial_features [B, C, H, W]`` -> the six maps per task via ``model.forward_dense``.

    Output names follow :func:`contract.head_output_names` (``heatmap``, ``reg``, ``height``,
    ``dim``, ``rot``, ``vel`` for one task); H and W may differ from the config's grid.
    """

    @property
    def input_specs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec(contract.HEAD_INPUT, (None, self.config.voxel_encoder.out_channels, None, None)),)

    @property
    def output_names(self) -> tuple[str, ...]:
        return contract.head_output_names(len(self.config.head.tasks))

    def _infer_impl(self, feed: dict[str, Tensor]) -> dict[str, Tensor]:
        bev = feed[contract.HEAD_INPUT]

        def run() -> dict[str, Tensor]:
            task_maps = self.model.forward_dense(bev)
            flat = [maps[name] for maps in task_maps for name in contract.HEAD_OUTPUTS]
            return dict(zip(self.output_names, flat))

        return self._timed(run)
