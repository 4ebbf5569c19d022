"""Process-wide numeric switches of PyTorch, as explicit scoped context managers."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def reproducible() -> Iterator[dict[str, bool]]:
    """Strict fp32, deterministic PyTorch kernels inside the block; previous values restored after.

    Sets ``torch.backends.cuda.matmul.allow_tf32 = False``, ``torch.backends.cudnn.allow_tf32 =
    False``, ``torch.backends.cudnn.deterministic = True`` and ``torch.backends.cudnn.benchmark
    = False``, and yields those settings for the report. ONNX Runtime and TensorRT settings
    belong to their backends (``deterministic``, ``tf32`` constructor arguments).
    """
    cuda_matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = (cuda_matmul.allow_tf32, cudnn.allow_tf32, cudnn.deterministic, cudnn.benchmark)
    cuda_matmul.allow_tf32, cudnn.allow_tf32, cudnn.deterministic, cudnn.benchmark = False, False, True, False
    try:
        yield {"torch.backends.cuda.matmul.allow_tf32": False, "torch.backends.cudnn.allow_tf32": False,
               "torch.backends.cudnn.deterministic": True, "torch.backends.cudnn.benchmark": False}
    finally:
        cuda_matmul.allow_tf32, cudnn.allow_tf32, cudnn.deterministic, cudnn.benchmark = saved
