"""CUDA's driver and the device's context started in a thread while torch is imported.

torch creates its CUDA context at its first CUDA call, after its own import (1.5-2 s on the H200
host); the driver's initialisation and the device's primary context then take another few tenths
of a second. Both are calls into the driver library, which ctypes makes without holding the GIL,
so a thread that makes them while the main thread imports torch runs beside the import; torch's
runtime later finds the device's primary context alive and takes it (a primary context is shared
by everything in the process that uses the device). Best effort: without an NVIDIA driver, with a
torch built without CUDA, or on any driver error the thread ends and torch starts CUDA as it
always does. Imports no torch.
"""

from __future__ import annotations

import ctypes
import importlib.util
import threading
from pathlib import Path

from centerpoint_deploy.errors import CenterPointError
from centerpoint_deploy.launch import launch_ranks

#: The NVIDIA driver's control node: present where the driver is loaded.
DRIVER_NODE = Path("/dev/nvidiactl")
#: The CUDA driver library (what torch's runtime loads too).
DRIVER_LIBRARY = "libcuda.so.1"
#: Seconds :meth:`CudaWarmup.join` waits for the driver (a driver that hangs would hang torch too).
JOIN_TIMEOUT_S = 60.0


def cuda_ordinal(device: str) -> int | None:
    """The CUDA device a ``--device`` value computes on, or ``None`` when it names none.

    ``cuda:N`` is N. ``auto`` (CUDA when available) and a bare ``cuda`` are device 0, or under a
    ``torchrun`` launch the rank's own GPU, ``launch_ranks().local_rank``, as
    ``evaluate.distributed.RankGroup.device`` places a rank; None for a malformed launch.
    """
    if device in ("auto", "cuda"):
        try:
            return launch_ranks().local_rank
        except CenterPointError:  # a malformed launch: the command reports it; nothing to warm
            return None
    kind, _, index = device.partition(":")
    return int(index) if kind == "cuda" and index.isdigit() else None


def torch_has_cuda() -> bool:
    """Whether the installed torch is a CUDA build (its ``lib/libtorch_cuda.so``), without importing it."""
    spec = importlib.util.find_spec("torch")
    return spec is not None and spec.origin is not None and (Path(spec.origin).parent / "lib" / "libtorch_cuda.so").is_file()


def retain_primary_context(ordinal: int, library: str = DRIVER_LIBRARY) -> bool:
    """Initialise the driver and retain device ``ordinal``'s primary context; False on any failure.

    The context is kept for the process's life (torch's runtime retains the same one)."""
    try:
        driver = ctypes.CDLL(library)
    except OSError:
        return False
    device, context = ctypes.c_int(), ctypes.c_void_p()
    return (driver.cuInit(0) == 0 and driver.cuDeviceGet(ctypes.byref(device), ordinal) == 0
            and driver.cuDevicePrimaryCtxRetain(ctypes.byref(context), device) == 0)


class CudaWarmup:
    """:func:`retain_primary_context` in a daemon thread; :meth:`join` before the process forks."""

    def __init__(self, ordinal: int) -> None:
        self.ordinal = ordinal
        self.retained: bool | None = None  # None until the thread has finished
        self._thread = threading.Thread(target=self._run, name="cuda-warmup", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.retained = retain_primary_context(self.ordinal)

    def join(self) -> None:
        """Wait for the thread (at most :data:`JOIN_TIMEOUT_S`), so that no thread of ours is alive
        when the process forks its readers."""
        self._thread.join(JOIN_TIMEOUT_S)


def start_cuda_warmup(device: str) -> CudaWarmup | None:
    """A :class:`CudaWarmup` for the CUDA device ``device`` (a ``--device`` value) computes on, or
    ``None`` when it names no CUDA device, no NVIDIA driver is loaded here or torch has no CUDA."""
    ordinal = cuda_ordinal(device)
    if ordinal is None or not DRIVER_NODE.exists() or not torch_has_cuda():
        return None
    return CudaWarmup(ordinal)
