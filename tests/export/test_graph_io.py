"""The I/O contract checker on hand-written tensor descriptions."""

from __future__ import annotations

import torch

from centerpoint_deploy.graph_io import TensorSpec
from centerpoint_deploy.graph_io import contract_problems

ENC_IN = TensorSpec("input_features", (None, None, 11))
ENC_OUT = TensorSpec("pillar_features", (None, 1, 32))
HEAD_IN = TensorSpec("spatial_features", (None, 32, None, None))


def head_outputs(names: tuple[str, ...]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(n, (None, 2, None, None)) for n in names)


def test_conforming_graphs_have_no_problems() -> None:
    assert contract_problems("encoder", (ENC_IN,), (ENC_OUT,)) == []
    # Autoware's fixed 32 points per pillar is allowed too.
    assert contract_problems("encoder", (TensorSpec("input_features", (None, 32, 11)),), (ENC_OUT,)) == []
    outputs = head_outputs(("heatmap", "reg", "height", "dim", "rot", "vel"))
    assert contract_problems("head", (HEAD_IN,), outputs) == []


def test_multi_task_head_names() -> None:
    names = tuple(f"{n}_{t}" for t in range(2) for n in ("heatmap", "reg", "height", "dim", "rot", "vel"))
    assert contract_problems("head", (HEAD_IN,), head_outputs(names)) == []


def test_head_outputs_out_of_order() -> None:
    outputs = head_outputs(("heatmap", "reg", "height", "rot", "dim", "vel"))
    assert contract_problems("head", (HEAD_IN,), outputs) == [
        "outputs are ['heatmap', 'reg', 'height', 'rot', 'dim', 'vel'], expected "
        "['heatmap', 'reg', 'height', 'dim', 'rot', 'vel'] in this order"]


def test_encoder_shape_and_dtype_problems() -> None:
    assert contract_problems("encoder", (TensorSpec("input_features", (500, 20, None)),), (ENC_OUT,)) == [
        "'input_features' axis 2 is dynamic, expected a fixed size",
        "'input_features' axis 0 is fixed at 500, expected a dynamic axis",
    ]
    assert contract_problems("encoder", (TensorSpec("input_features", (None, 20, 11)),), (ENC_OUT,)) == [
        "'input_features' axis 1 is 20, expected dynamic or 32"]
    half = TensorSpec("pillar_features", (None, 2, 32), torch.float16)
    assert contract_problems("encoder", (ENC_IN,), (half,)) == [
        "'pillar_features' has dtype torch.float16, expected torch.float32",
        "'pillar_features' axis 1 is 2, expected 1",
    ]
    assert contract_problems("encoder", (TensorSpec("input_features", (None, 11)),), (ENC_OUT,)) == [
        "'input_features' has rank 2 ['?', 11], expected rank 3"]
