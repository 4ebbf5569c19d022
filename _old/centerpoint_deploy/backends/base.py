"""The backend interface: one network part (encoder or backbone-neck-head) on one runtime.

Shaped after Polygraphy's runners: constructing a backend is cheap and has no side effects;
:meth:`Backend.load` (or ``with backend:``) allocates; :meth:`Backend.infer` checks the feed
against :attr:`Backend.input_specs` and returns named outputs on the backend's device;
:meth:`Backend.close` frees. Backends never log; they record :attr:`last_inference_time`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from centerpoint_deploy.errors import BackendError
from centerpoint_deploy.graph_io import TensorSpec


class Backend(ABC):
    """One network part behind a uniform ``infer({name: tensor}) -> {name: tensor}`` call."""

    #: Short identifier, e.g. ``"pytorch"``, ``"onnxruntime"``, ``"tensorrt"``.
    kind: str = "backend"
    #: The network runs channels-last (NHWC): a 4-D input laid out so saves a transposing copy.
    channels_last_input: bool = False
    #: :meth:`forward_in_capture` works: the network can be recorded in a caller's CUDA graph.
    capturable: bool = False

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self._events: tuple[torch.cuda.Event, torch.cuda.Event] | None = None
        self._last_time: float | None = None
        self._loaded = False

    # ----- timing: a CUDA run is timed by events, read only when asked for ----------------
    @property
    def last_inference_time(self) -> float | None:
        """Seconds of the last :meth:`infer`; for GPU work timed by events, reading waits for it to finish."""
        if self._events is not None:
            start, end = self._events
            end.synchronize()
            self._last_time, self._events = start.elapsed_time(end) / 1000.0, None
        return self._last_time

    @last_inference_time.setter
    def last_inference_time(self, seconds: float | None) -> None:
        self._last_time, self._events = seconds, None

    def _timed_by(self, start: torch.cuda.Event, end: torch.cuda.Event) -> None:
        """The last inference ran between these two recorded events (nothing waits for them now)."""
        self._events = (start, end)

    # ----- description -----------------------------------------------------------------
    @property
    def name(self) -> str:
        """Human-readable ``kind-device``, e.g. ``onnxruntime-cuda``."""
        return f"{self.kind}-{self.device.type}"

    @property
    def providers(self) -> tuple[str, ...] | None:
        """The runtime's execution providers in priority order, where it has them (ONNX Runtime), once loaded."""
        return None

    @property
    @abstractmethod
    def input_specs(self) -> tuple[TensorSpec, ...]:
        """The inputs :meth:`infer` accepts."""

    @property
    @abstractmethod
    def output_names(self) -> tuple[str, ...]:
        """The outputs :meth:`infer` returns, in graph order."""

    # ----- lifecycle -------------------------------------------------------------------
    def load(self) -> "Backend":
        """Allocate runtime resources (sessions, engines, device memory). Idempotent."""
        if not self._loaded:
            self._load_impl()
            self._loaded = True
        return self

    def close(self) -> None:
        if self._loaded:
            self._close_impl()
            self._loaded = False

    def __enter__(self) -> "Backend":
        return self.load()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- inference -------------------------------------------------------------------
    def infer(self, feed: dict[str, Tensor]) -> dict[str, Tensor]:
        """Run the graph. ``feed`` must hold exactly :attr:`input_specs`; outputs are on :attr:`device`."""
        if not self._loaded:
            raise BackendError(f"{self.name}: call load() (or use 'with backend:') before infer()")
        expected = {s.name for s in self.input_specs}
        if set(feed) != expected:
            raise BackendError(f"{self.name}: feed has inputs {sorted(feed)}, expected {sorted(expected)}")
        for spec in self.input_specs:
            spec.check(feed[spec.name], self.name)
        return self._infer_impl(feed)

    def forward_in_capture(self, tensor: Tensor) -> dict[str, Tensor]:
        """The bare network on its one input, for a caller's CUDA graph capture (only where :attr:`capturable`)."""
        raise BackendError(f"{self.name} cannot run inside a CUDA graph capture (only PyTorch backends can)")

    @abstractmethod
    def _load_impl(self) -> None: ...

    def _close_impl(self) -> None:
        """Free resources; the default has nothing to free."""

    @abstractmethod
    def _infer_impl(self, feed: dict[str, Tensor]) -> dict[str, Tensor]: ...
