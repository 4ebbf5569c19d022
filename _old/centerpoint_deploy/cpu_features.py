"""What this CPU computes natively, for choosing benchmark variants that make sense on it."""

from __future__ import annotations

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
