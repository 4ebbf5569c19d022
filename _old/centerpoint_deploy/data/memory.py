"""Keep a reader process's freed memory for reuse (glibc's ``mallopt``).

A frame's arrays are megabytes (188,000 points of 5 floats: 3.7 MB, each of several steps).
glibc serves such blocks with a fresh ``mmap`` and returns them on ``free``, so every frame
faults its memory in again page by page, with the kernel zeroing each page: on the 2-core CPU
that was two thirds of a frame's read time (7.23 ms a frame, 1.83 ms with the blocks kept;
``benchmarks/read_frames.py``). Raising the
mmap threshold to glibc's maximum (32 MB) and the trim threshold keeps those blocks in the
process's heap, so the next frame reuses already-mapped pages.
"""

from __future__ import annotations

import ctypes
import sys

#: ``mallopt`` parameters (``<malloc.h>``).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: Blocks up to this size come from the heap (glibc's upper limit on 64-bit systems).
MMAP_THRESHOLD = 32 << 20
#: Free memory at the heap's top kept rather than returned to the system.
TRIM_THRESHOLD = 128 << 20


def keep_freed_memory() -> bool:
    """Set this process's malloc thresholds as above; False where there is no glibc ``mallopt``
    (then nothing changes: the reads are correct, only slower)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
