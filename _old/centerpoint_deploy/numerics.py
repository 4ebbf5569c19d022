"""Process-wide numeric switches of PyTorch, owned here only, as explicit scoped context managers.

TF32 (``torch.backends.cuda.matmul.allow_tf32``, ``torch.backends.cudnn.allow_tf32``), cuDNN
benchmarking and cuDNN determinism are global to the process: every block that changes them
goes through :func:`torch_switches`, which restores the caller's values on the way out.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def torch_switches(*, tf32: bool | None = None, cudnn_benchmark: bool | None = None,
                   deterministic: bool | None = None) -> Iterator[None]:
    """Set the given switches (``None``: leave as is) inside the block; restore all of them after."""
    cuda_matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = (cuda_matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark, cudnn.deterministic)
    if tf32 is not None:
        cuda_matmul.allow_tf32 = cudnn.allow_tf32 = tf32
    if cudnn_benchmark is not None:
        cudnn.benchmark = cudnn_benchmark
    if deterministic is not None:
        cudnn.deterministic = deterministic
    try:
        yield
    finally:
        cuda_matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark, cudnn.deterministic = saved


@contextmanager
def reproducible() -> Iterator[dict[str, bool]]:
    """Strict fp32, deterministic PyTorch kernels inside the block; previous values restored after.

    Sets ``torch.backends.cuda.matmul.allow_tf32 = False``, ``torch.backends.cudnn.allow_tf32 =
    False``, ``torch.backends.cudnn.deterministic = True`` and ``torch.backends.cudnn.benchmark
    = False``, and yields those settings for the report. ONNX Runtime and TensorRT settings
    belong to their backends (``deterministic``, ``tf32`` constructor arguments).
    """
    with torch_switches(tf32=False, cudnn_benchmark=False, deterministic=True):
        yield {"torch.backends.cuda.matmul.allow_tf32": False, "torch.backends.cudnn.allow_tf32": False,
               "torch.backends.cudnn.deterministic": True, "torch.backends.cudnn.benchmark": False}
