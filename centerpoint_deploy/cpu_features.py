"""What this CPU computes natively: for choosing benchmark variants that make sense on it, and
whether ONNX Runtime's fused int8 kernels compute exactly on it."""

from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path

import torch

#: ``/proc/cpuinfo`` flags of CPUs with bf16 arithmetic (AVX512-BF16 dot products, AMX tiles).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str] | None:
    """The first processor's feature flags from ``cpuinfo``, None where there is no such file."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


@lru_cache(maxsize=1)
def native_bf16() -> tuple[bool, str]:
    """``(True, "")`` where the CPU has bf16 arithmetic, else ``(False, why not)``.

    Linux: a flag of :data:`BF16_FLAGS` in ``/proc/cpuinfo``. Elsewhere: torch's own dispatch
    level (``torch.backends.cpu.get_cpu_capability()``) naming AMX. Without native bf16, oneDNN
    emulates it by converting every operand, which is many times slower than fp32.
    """
    capability = torch.backends.cpu.get_cpu_capability()
    flags = cpu_flags()
    if flags is not None:
        found = [f for f in BF16_FLAGS if f in flags]
        if found:
            return True, ""
        return False, (f"this CPU has no native bf16 ({' / '.join(BF16_FLAGS)} not among its flags; torch dispatches "
                       f"{capability} kernels): bf16 would be emulated, far slower than fp32")
    if "AMX" in capability.upper():
        return True, ""
    return False, f"cannot tell whether this CPU has native bf16 (torch dispatches {capability} kernels); not assumed"


#: ``/proc/cpuinfo`` flags of x86 CPUs whose int8 dot products add up in 32 bits (VNNI).
VNNI_FLAGS = ("avx512_vnni", "avx_vnni")
#: ``platform.machine()`` names of x86 CPUs.
X86_MACHINES = ("x86_64", "amd64", "i386", "i686")


def int8_sums_exact(flags: frozenset[str] | None, machine: str) -> tuple[bool, str]:
    """``(True, "")`` where ONNX Runtime's fused int8 CPU kernels (QLinearConv, QLinearMatMul, the
    QDQ groups fused into them) sum a dot product exactly, else ``(False, why not)``.

    On x86 without VNNI those kernels multiply unsigned by signed bytes with ``vpmaddubsw``, which
    adds each pair of products in saturating 16-bit arithmetic: a pair past 32767 is clipped, and
    the result is not the graph's (seen on an AVX2 EPYC: the INT8 encoder's output at 8.3 dB SNR
    against the same QDQ graph run unfused). VNNI's ``vpdpbusd`` and ARM's dot products sum in
    32 bits. ``flags``: :func:`cpu_flags` (None: not known); ``machine``: ``platform.machine()``.
    """
    if machine.lower() not in X86_MACHINES:
        return True, ""
    if flags is None:
        return False, "cannot tell whether this x86 CPU has VNNI; not assumed"
    if any(f in flags for f in VNNI_FLAGS):
        return True, ""
    return False, (f"this x86 CPU has no VNNI ({' / '.join(VNNI_FLAGS)} not among its flags): ONNX Runtime's int8 "
                   f"kernels would add pairs of products in saturating 16-bit arithmetic")


@lru_cache(maxsize=1)
def exact_int8_kernels() -> tuple[bool, str]:
    """:func:`int8_sums_exact` of this machine's CPU."""
    return int8_sums_exact(cpu_flags(), platform.machine())
