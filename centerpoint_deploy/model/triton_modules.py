"""Triton where it is importable: the model's CUDA kernels are written in it, CPU-only torch has none."""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Callable, TypeVar

T = TypeVar("T")


@functools.cache
def triton_modules() -> tuple[ModuleType, ModuleType] | None:
    """``(triton, triton.language)``, or ``None`` where Triton is not importable (CPU-only torch)."""
    try:
        import triton
        import triton.language as tl
    except ImportError:
        return None
    return triton, tl


def triton_launcher(factory: Callable[[ModuleType, ModuleType], T]) -> Callable[[], T | None]:
    """``factory(triton, triton.language)`` made once, on the first call (``None`` where Triton is not
    importable): a decorator for a function that defines a kernel and returns its launcher."""

    @functools.cache
    def launcher() -> T | None:
        modules = triton_modules()
        return None if modules is None else factory(*modules)

    launcher.__doc__ = factory.__doc__
    return launcher
