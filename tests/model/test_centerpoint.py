"""CenterPoint structure: mmdet3d key names and shapes, output shapes and order, probe points."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from centerpoint_deploy.config import load_config
from centerpoint_deploy.config.schema import NeckConfig
from centerpoint_deploy.contract import HEAD_OUTPUTS
from centerpoint_deploy.errors import BackendError
from centerpoint_deploy.model import CenterPoint
from centerpoint_deploy.model.neck import SECONDFPN

#: Key, shape and dtype of every state_dict entry of the AWML j6gen2 model, read off mmdet3d 1.4.0.
REFERENCE = Path(__file__).parent / "mmdet3d-centerpoint-j6gen2-state-dict.txt"


def reference_entries() -> list[tuple[str, list[int], str]]:
    entries = []
    for line in REFERENCE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, shape, dtype = line.split("\t")
            entries.append((name, [int(d) for d in shape.strip("[]").split(",") if d.strip()], dtype))
    return entries


def test_j6gen2_state_dict_matches_mmdet3d_exactly() -> None:
    model = CenterPoint(load_config("j6gen2_base"))
    ours = [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()]
    reference = reference_entries()
    assert len(reference) == 180
    assert ours == reference  # names, order, shapes and dtypes


def test_successor_forward_on_small_map() -> None:
    cfg = load_config("j6gen2_base_amp")
    model = CenterPoint(cfg).eval()
    assert isinstance(model.pts_neck.deblocks[0][0], nn.Conv2d)  # stride 0.5 -> stride-2 conv
    assert model.pts_neck.deblocks[0][0].weight.shape == (128, 64, 2, 2)
    with torch.no_grad():
        tasks = model.forward_dense(torch.randn(1, 32, 64, 64))
    assert len(tasks) == 1
    assert tuple(tasks[0]) == HEAD_OUTPUTS
    shapes = {name: tuple(t.shape) for name, t in tasks[0].items()}
    assert shapes == {"heatmap": (1, 5, 32, 32), "reg": (1, 2, 32, 32), "height": (1, 1, 32, 32),
                      "dim": (1, 3, 32, 32), "rot": (1, 2, 32, 32), "vel": (1, 2, 32, 32)}


def test_tiny_encode_and_dense() -> None:
    cfg = load_config("tiny")
    model = CenterPoint(cfg).eval()
    with torch.no_grad():
        pillars = model.encode(torch.randn(9, 32, cfg.num_features))
        tasks = model.forward_dense(torch.randn(2, 32, *cfg.bev_shape))
    assert pillars.shape == (9, 1, 32)
    assert tasks[0]["heatmap"].shape == (2, 5, 64, 64)


def test_heatmap_bias_starts_at_init_bias() -> None:
    cfg = load_config("tiny")
    model = CenterPoint(cfg)
    bias = model.pts_bbox_head.task_heads[0].heatmap[-1].bias
    torch.testing.assert_close(bias, torch.full((5,), cfg.head.init_bias))


def test_neck_layer_kinds() -> None:
    neck = SECONDFPN(NeckConfig(in_channels=(8, 8, 8), out_channels=(4, 4, 4), upsample_strides=(1, 2, 0.25),
                                use_conv_for_no_stride=False))
    kinds = [(type(d[0]).__name__, d[0].kernel_size, d[0].stride) for d in neck.deblocks]
    assert kinds == [("ConvTranspose2d", (1, 1), (1, 1)), ("ConvTranspose2d", (2, 2), (2, 2)), ("Conv2d", (4, 4), (4, 4))]


def test_probe_points_resolve_in_order() -> None:
    model = CenterPoint(load_config("tiny"))
    names = model.probe_points()
    assert names[:2] == ["pts_voxel_encoder.pfn_layers.0", "pts_voxel_encoder.pfn_layers.1"]
    assert "pts_neck.deblocks.2" in names and names[-6:] == [
        f"pts_bbox_head.task_heads.0.{m}" for m in HEAD_OUTPUTS]
    for name in names:
        model.get_submodule(name)  # raises if the name does not exist


def test_bad_inputs_raise() -> None:
    model = CenterPoint(load_config("tiny")).eval()
    with pytest.raises(BackendError, match=r"\[num_voxels, points, 11\]"):
        model.encode(torch.randn(4, 32, 9))
    with pytest.raises(BackendError, match=r"\[batch, 32, H, W\]"):
        model.forward_dense(torch.randn(1, 16, 64, 64))
    with pytest.raises(BackendError, match="multiples of 4"):
        model.forward_dense(torch.randn(1, 32, 62, 64))
