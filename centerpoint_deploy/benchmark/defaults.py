"""The benchmark's default variant set and run counts for a device, and what it leaves out here."""

from __future__ import annotations

import torch

from centerpoint_deploy.cpu_features import native_bf16
from centerpoint_deploy.variant import VariantSpec

#: The variants ``benchmark`` runs when none are named, per device type.
DEFAULT_VARIANTS = {
    "cpu": ("pytorch:fp32", "pytorch:fp32+static", "pytorch:bf16+fuse_batchnorm", "onnxruntime:fp32"),
    "cuda": (
        "pytorch:fp32", "pytorch:tf32", "pytorch:fp16+channels_last+fuse_batchnorm",
        "pytorch:fp16+channels_last+fuse_batchnorm+cuda_graph+static",
        "pytorch:bf16+channels_last+fuse_batchnorm+cuda_graph+static",
        "pytorch:fp16+channels_last+fuse_batchnorm+fuse_relu+pipeline_graph",
        "pytorch:fp16+channels_last+fuse_batchnorm+fuse_relu+fuse_heads+fuse_neck+compile+max_autotune+pipeline_graph",
        "onnxruntime:fp32", "onnxruntime:fp32+cudnn_benchmark+pipeline_graph", "onnxruntime:fp16",
        "onnxruntime:fp16+channels_last+pipeline_graph", "tensorrt:fp16",
    ),
}

#: ``(warmup, iterations)`` per device type when the user gives none: a CPU frame of a full-size
#: model takes a second or more, so the CPU set does a few runs (minutes on 2 cores, not hours).
DEFAULT_RUNS = {"cpu": (1, 5), "cuda": (10, 100)}


def default_variants(device: torch.device) -> tuple[list[str], dict[str, str]]:
    """The default variants for ``device`` that make sense on this machine, and ``{variant: reason}``
    for those left out (bf16 on a CPU without native bf16 arithmetic)."""
    variants = list(DEFAULT_VARIANTS[device.type])
    skipped: dict[str, str] = {}
    if device.type == "cpu":
        native, reason = native_bf16()
        if not native:
            skipped = {v: reason for v in variants if VariantSpec.parse(v).precision == "bf16"}
    return [v for v in variants if v not in skipped], skipped
