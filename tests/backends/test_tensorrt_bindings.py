"""Binding plans of the TensorRT backend (pure; no TensorRT needed) and its argument checks."""

from __future__ import annotations

import pytest
import torch

from centerpoint_deploy.backends.tensorrt import EngineTensor, TensorRTBackend, plan_bindings
from centerpoint_deploy.errors import BackendError

ENCODER = [
    EngineTensor("input_features", True, (None, 32, 11), torch.float32,
                 ((1000, 32, 11), (16000, 32, 11), (64000, 32, 11))),
    EngineTensor("pillar_features", False, (None, 1, 32), torch.float32),
]


def test_plan_sets_the_feed_shapes() -> None:
    assert plan_bindings(ENCODER, {"input_features": (1000, 32, 11)}) == {"input_features": (1000, 32, 11)}
    assert plan_bindings(ENCODER, {"input_features": (64000, 32, 11)}) == {"input_features": (64000, 32, 11)}


def test_voxel_count_outside_the_profile() -> None:
    with pytest.raises(BackendError, match=r"axis 0 is 64001, the engine's profile allows 1000\.\.64000"):
        plan_bindings(ENCODER, {"input_features": (64001, 32, 11)})
    with pytest.raises(BackendError, match=r"axis 0 is 999, the engine's profile allows 1000\.\.64000"):
        plan_bindings(ENCODER, {"input_features": (999, 32, 11)})


def test_names_and_fixed_dims() -> None:
    with pytest.raises(BackendError, match=r"feed has inputs \['voxels'\], the engine expects \['input_features'\]"):
        plan_bindings(ENCODER, {"voxels": (1000, 32, 11)})
    with pytest.raises(BackendError, match=r"shape \[1000, 20, 11\], the engine expects \['\?', 32, 11\]"):
        plan_bindings(ENCODER, {"input_features": (1000, 20, 11)})
    with pytest.raises(BackendError, match=r"shape \[1000, 32\]"):
        plan_bindings(ENCODER, {"input_features": (1000, 32)})


def test_backend_arguments(tmp_path) -> None:
    with pytest.raises(BackendError, match="needs a CUDA device, got 'cpu'"):
        TensorRTBackend(tmp_path / "x.engine", "cpu", part="encoder")
    with pytest.raises(BackendError, match="part 'neck'"):
        TensorRTBackend(tmp_path / "x.engine", part="neck")  # type: ignore[arg-type]
    backend = TensorRTBackend(tmp_path / "x.engine", part="encoder")
    with pytest.raises(BackendError, match="does not exist"):
        backend.load()
    with pytest.raises(BackendError, match="call load"):
        backend.input_specs
