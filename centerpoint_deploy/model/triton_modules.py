"""Triton where it is importable: the model's CUDA kernels are written in it, CPU-only torch has none."""

from __future__ import annotations

import functools
from types import ModuleType


@functools.cache
def triton_modules() -> tuple[ModuleType, ModuleType] | None:
    """``(triton, triton.language)``, or ``None`` where Triton is not importable (CPU-only torch)."""
    try:
        import triton
        import triton.language as tl
    except ImportError:
        return None
    return triton, tl
