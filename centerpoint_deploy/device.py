"""Devices: parse a device string the user gave, and put small constants on a device without a sync."""

from __future__ import annotations

import functools
from typing import Any, Sequence

import torch
from torch import Tensor

from centerpoint_deploy.errors import BackendError, BackendUnavailableError


def resolve_device(device: torch.device | str) -> torch.device:
    """``"cpu"`` / ``"cuda"`` / ``"cuda:N"`` as a ``torch.device`` that exists here.

    Raises:
        BackendError: not a CPU or CUDA device string.
        BackendUnavailableError: CUDA asked for but not available (or no such GPU index).
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise BackendError(f"device '{device}' is not a valid device; use 'cpu', 'cuda' or 'cuda:N'") from exc
    if resolved.type not in ("cpu", "cuda"):
        raise BackendError(f"device '{device}' is not supported; use 'cpu', 'cuda' or 'cuda:N'")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendUnavailableError(f"device '{device}' requested but CUDA is not available "
                                          f"(torch {torch.__version__}, built with CUDA {torch.version.cuda})")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise BackendUnavailableError(f"device '{device}' requested but only {torch.cuda.device_count()} GPU(s) exist")
    return resolved


def device_constant(values: Sequence[float], device: torch.device) -> Tensor:
    """``Tensor[len(values)]`` float32 on ``device`` without synchronising the host.

    Outside a capture: one non-blocking copy. Inside a CUDA graph capture the values are
    written by fill kernels instead: a captured host -> device copy would replay from a
    temporary host buffer that is gone by then. Traced by ``torch.compile``, a constant of the
    compiled graph (so that recording the compiled code later does not recompile it).
    """
    if torch.compiler.is_compiling():  # a constant of the compiled graph, whether or not it is captured later
        return torch.tensor(tuple(values), dtype=torch.float32, device=device)
    if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        constant = torch.empty(len(values), dtype=torch.float32, device=device)
        for index, value in enumerate(values):
            constant[index].fill_(value)  # a fill kernel: no host tensor involved
        return constant
    return torch.tensor(tuple(values), dtype=torch.float32).to(device, non_blocking=True)


def cached_constant(values: Any, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``torch.tensor(values)`` on ``device``, made once (a host -> device copy per call would wait for
    the device, and a CUDA graph capture refuses one); ``values`` a number or nested tuples. Read
    only; a normal tensor even when first asked for under ``inference_mode`` (so that autograd may
    still use it). Traced by ``torch.compile``, a constant of the compiled graph instead."""
    if torch.compiler.is_compiling():
        return torch.tensor(values, dtype=dtype, device=device)
    return _made_once(values, dtype, device)


@functools.lru_cache(maxsize=64)
def _made_once(values: Any, dtype: torch.dtype, device: torch.device) -> Tensor:
    with torch.inference_mode(False):
        return torch.tensor(values, dtype=dtype, device=device)


def copy_to_host(*tensors: Tensor) -> tuple[list[Tensor], "torch.cuda.Event | None"]:
    """``tensors`` on the host without waiting for the device: CUDA ones copied into fresh pinned
    memory on the current stream, with an event recorded behind the copies (synchronise it before
    reading them); host ones as they are, with no event. All on one device."""
    if not tensors or tensors[0].device.type != "cuda":
        return [tensor.cpu() for tensor in tensors], None
    host = [torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True) for tensor in tensors]
    for target, source in zip(host, tensors):
        target.copy_(source, non_blocking=True)
    event = torch.cuda.Event()
    event.record(torch.cuda.current_stream(tensors[0].device))
    return host, event
