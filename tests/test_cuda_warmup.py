import subprocess
import sys
import threading
import time

import pytest
import torch

from centerpoint_deploy import cuda_warmup
from centerpoint_deploy.cli.common import resolve_device
from centerpoint_deploy.cuda_warmup import CudaWarmup, cuda_ordinal, retain_primary_context, start_cuda_warmup


@pytest.fixture
def single_process(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("device, ordinal", [("auto", 0), ("cuda", 0), ("cuda:3", 3), ("cpu", None),
                                             ("cuda:x", None), ("cuda:-1", None), ("mps", None)])
def test_the_ordinal_of_a_device_value(single_process, device, ordinal):
    assert cuda_ordinal(device) == ordinal


def test_a_torchrun_rank_warms_its_own_gpu(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert cuda_ordinal("cuda") == cuda_ordinal("auto") == 1
    assert cuda_ordinal("cuda:0") == 0  # an explicit device stays as given
    monkeypatch.delenv("LOCAL_RANK")
    assert cuda_ordinal("cuda") == 3  # RankGroup: the rank when LOCAL_RANK is unset
    monkeypatch.setenv("LOCAL_RANK", "one")
    assert cuda_ordinal("cuda") is None  # a malformed launch: the command reports it, nothing is warmed


def test_torch_has_cuda_tells_the_build_without_importing_it():
    assert cuda_warmup.torch_has_cuda() == (torch.version.cuda is not None)


class FakeDriver:
    """The three driver calls, each answering a CUresult code."""

    def __init__(self, codes: dict[str, int]) -> None:
        self.codes, self.calls = codes, []

    def __getattr__(self, name):
        def call(*args):
            self.calls.append((name, args[1:] if name == "cuDeviceGet" else ()))
            return self.codes.get(name, 0)
        return call


def test_the_context_is_retained_on_the_device_asked_for(monkeypatch):
    driver = FakeDriver({})
    monkeypatch.setattr(cuda_warmup.ctypes, "CDLL", lambda name: driver)
    assert retain_primary_context(2)
    assert driver.calls == [("cuInit", ()), ("cuDeviceGet", (2,)), ("cuDevicePrimaryCtxRetain", ())]


def test_a_driver_error_stops_the_warmup(monkeypatch):
    driver = FakeDriver({"cuInit": 100})  # CUDA_ERROR_NO_DEVICE
    monkeypatch.setattr(cuda_warmup.ctypes, "CDLL", lambda name: driver)
    assert not retain_primary_context(0)
    assert driver.calls == [("cuInit", ())]
    driver = FakeDriver({"cuDeviceGet": 101})  # CUDA_ERROR_INVALID_DEVICE
    monkeypatch.setattr(cuda_warmup.ctypes, "CDLL", lambda name: driver)
    assert not retain_primary_context(7)
    assert [name for name, _ in driver.calls] == ["cuInit", "cuDeviceGet"]


def test_no_driver_library_is_no_warmup():
    assert not retain_primary_context(0, library="libcuda-that-is-not-here.so.1")


def test_no_thread_without_a_cuda_device_driver_or_build(single_process, monkeypatch, tmp_path):
    node = tmp_path / "nvidiactl"
    node.touch()
    monkeypatch.setattr(cuda_warmup, "DRIVER_NODE", node)
    monkeypatch.setattr(cuda_warmup, "torch_has_cuda", lambda: True)
    monkeypatch.setattr(cuda_warmup, "retain_primary_context", lambda ordinal: ordinal == 0)
    assert start_cuda_warmup("cpu") is None
    warmup = start_cuda_warmup("auto")
    warmup.join()
    assert warmup.ordinal == 0 and warmup.retained is True
    monkeypatch.setattr(cuda_warmup, "torch_has_cuda", lambda: False)
    assert start_cuda_warmup("cuda") is None
    monkeypatch.setattr(cuda_warmup, "torch_has_cuda", lambda: True)
    monkeypatch.setattr(cuda_warmup, "DRIVER_NODE", tmp_path / "absent")
    assert start_cuda_warmup("cuda") is None


def test_the_device_is_resolved_with_the_warmup_thread_ended(monkeypatch):
    started = []

    def slow_retain(ordinal):
        time.sleep(0.2)
        return True

    def start(device):
        monkeypatch.setattr(cuda_warmup, "retain_primary_context", slow_retain)
        started.append(CudaWarmup(0))
        return started[-1]

    monkeypatch.setattr(cuda_warmup, "start_cuda_warmup", start)
    assert resolve_device("cpu") == torch.device("cpu")
    assert started and started[0].retained is True  # joined: the thread had finished
    assert "cuda-warmup" not in [thread.name for thread in threading.enumerate()]


# In a fresh process: the warm-up's context, then torch's first CUDA call; prints whether the
# primary context was active before torch and whether torch's current context is that one.
_PROBE = """
import ctypes
from centerpoint_deploy.cuda_warmup import start_cuda_warmup

warmup = start_cuda_warmup("cuda")
warmup.join()
driver = ctypes.CDLL("libcuda.so.1")
device, flags, active, mine, current = ctypes.c_int(), ctypes.c_uint(), ctypes.c_int(), ctypes.c_void_p(), ctypes.c_void_p()
driver.cuDeviceGet(ctypes.byref(device), 0)
driver.cuDevicePrimaryCtxGetState(device, ctypes.byref(flags), ctypes.byref(active))
driver.cuDevicePrimaryCtxRetain(ctypes.byref(mine), device)
import torch
torch.zeros(1, device="cuda")
driver.cuCtxGetCurrent(ctypes.byref(current))
print(warmup.retained, active.value, current.value == mine.value)
"""


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_torch_takes_the_context_the_warmup_made():
    run = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["True", "1", "True"]
