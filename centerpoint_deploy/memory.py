"""Keep this process's freed memory for reuse (glibc's ``mallopt``).

glibc serves every block above its mmap threshold (128 kB to 32 MB) with a fresh ``mmap`` and
unmaps it on ``free``, so each use of a large block faults its pages in again, the kernel zeroing
every 4 kB page. Both hot paths here are made of such blocks:

- a reader's frame arrays are megabytes (188,000 points of 5 floats: 3.7 MB, each of several
  steps): on the 2-core CPU the faults were two thirds of a frame's read time (7.23 ms a frame,
  1.83 ms with the blocks kept; ``benchmarks/read_frames.py``);
- the dense network's feature maps on the CPU are tens to hundreds of megabytes (the demo's
  320 × 320 canvas at 384 channels: 157 MB): on the 2-core AVX2 CPU a demo forward pass faulted
  260,000 pages in and spent 0.35–0.85 CPU-seconds in the kernel, taking 0.9–1.3 s; with the
  blocks kept it takes 0.6–0.8 s with almost no faults (``benchmarks/cpu_network_ab.py``).

:func:`keep_freed_memory` turns ``mmap`` off for ``malloc`` (every block comes from the heap) and
keeps up to :data:`TRIM_THRESHOLD` of free memory at the heap's top, so the next frame or forward
pass reuses pages already mapped. It changes where blocks live, never what is computed: the
outputs are bit for bit the same. The price is that the process keeps its peak heap.
"""

from __future__ import annotations

import ctypes
import sys

#: ``mallopt`` parameters (``<malloc.h>``).
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
#: Free memory at the heap's top kept rather than returned to the system: a demo forward pass's
#: working set (model and ONNX Runtime session loaded), which 128 MB did not hold (200,000 faults a
#: pass remained).
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Serve every block from the heap and keep freed ones, as above; False where there is no
    glibc ``mallopt`` (then nothing changes: the results are the same, only slower)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
