"""Checkpoint I/O: mmdet3d layout round trips, prefixes, fp16, mismatch reports, unsafe files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from centerpoint_deploy.config import load_config
from centerpoint_deploy.errors import BackendUnavailableError, CheckpointError, ConfigError
from centerpoint_deploy.model import CenterPoint, build_model, load_checkpoint, read_checkpoint, save_checkpoint


class TrainingStateObject:
    """Stands for mmengine objects (message hub buffers) pickled into training checkpoints."""

    def __init__(self) -> None:
        self.values = [1.0, 2.0]


class RunsCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def trained() -> CenterPoint:
    """A tiny model with non-default weights and BN statistics."""
    torch.manual_seed(0)
    model = CenterPoint(load_config("tiny"))
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) + 0.5)
            else:
                tensor.fill_(7)
    return model


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0)


def test_round_trip_in_mmdet3d_layout(tmp_path: Path, trained: CenterPoint) -> None:
    path = save_checkpoint(trained, tmp_path / "ckpt" / "model.pth", meta={"epoch": 3, "classes": ["car"]})
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"state_dict", "meta"}
    assert raw["meta"] == {"epoch": 3, "classes": ["car"]}
    assert "pts_bbox_head.task_heads.0.heatmap.1.bias" in raw["state_dict"]
    fresh = CenterPoint(load_config("tiny"))
    assert load_checkpoint(fresh, path) == {"epoch": 3, "classes": ["car"]}
    assert_same_weights(fresh, trained)
    assert list(tmp_path.joinpath("ckpt").iterdir()) == [path]  # no temporary file left behind


def test_ddp_prefix_bare_state_dict_and_fp16(tmp_path: Path, trained: CenterPoint) -> None:
    bare = {f"module.{k}": v.half() if v.is_floating_point() else v for k, v in trained.state_dict().items()}
    fresh = CenterPoint(load_config("tiny"))
    assert load_checkpoint(fresh, bare) == {}
    for k, v in fresh.state_dict().items():
        assert v.dtype == trained.state_dict()[k].dtype
        torch.testing.assert_close(v, trained.state_dict()[k].half().to(v.dtype))

    path = save_checkpoint(trained, tmp_path / "half.pth", meta={}, half=True)
    assert torch.load(path, weights_only=True)["state_dict"]["pts_backbone.blocks.0.0.weight"].dtype == torch.float16
    state, _ = read_checkpoint(path)
    assert state["pts_backbone.blocks.0.0.weight"].dtype == torch.float32
    assert state["pts_backbone.blocks.0.1.num_batches_tracked"].dtype == torch.int64


def test_mismatch_report_lists_every_kind(trained: CenterPoint) -> None:
    state = dict(trained.state_dict())
    del state["pts_neck.deblocks.0.1.bias"]
    del state["pts_neck.deblocks.0.1.weight"]
    state["pts_middle_encoder.extra"] = torch.zeros(3)
    state["pts_bbox_head.shared_conv.conv.weight"] = torch.zeros(16, 48, 1, 1)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(CenterPoint(load_config("tiny")), {"state_dict": state, "meta": {}})
    message = str(info.value)
    assert "2 missing key(s): pts_neck.deblocks.0.1.weight model [16], pts_neck.deblocks.0.1.bias model [16]" in message
    assert "1 unexpected key(s): pts_middle_encoder.extra checkpoint [3]" in message
    assert ("1 mis-shaped key(s): pts_bbox_head.shared_conv.conv.weight checkpoint [16, 48, 1, 1] "
            "vs model [16, 48, 3, 3]") in message


def test_report_is_capped_and_non_strict_skips(trained: CenterPoint) -> None:
    state = {k: v for k, v in trained.state_dict().items() if not k.startswith("pts_backbone")}
    model = CenterPoint(load_config("tiny"))
    with pytest.raises(CheckpointError, match=r"missing key\(s\): .* more\)") as info:
        load_checkpoint(model, state)
    n_backbone = sum(k.startswith("pts_backbone") for k in model.state_dict())
    assert f"{n_backbone} missing" in str(info.value)
    load_checkpoint(model, {**state, "unused": torch.zeros(1)}, strict=False)
    torch.testing.assert_close(model.pts_bbox_head.shared_conv.conv.weight,
                               trained.pts_bbox_head.shared_conv.conv.weight)
    with pytest.raises(CheckpointError, match="mis-shaped"):
        load_checkpoint(model, {"pts_bbox_head.shared_conv.conv.weight": torch.zeros(1)}, strict=False)


def test_unreadable_files(tmp_path: Path, trained: CenterPoint) -> None:
    path = save_checkpoint(trained, tmp_path / "full.pth", meta={})
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated.pth"):
        read_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nothing.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="not a checkpoint.*got a list"):
        read_checkpoint(tmp_path / "list.pth")
    torch.save({"state_dict": {"a": 1}}, tmp_path / "ints.pth")
    with pytest.raises(CheckpointError, match="must be tensors"):
        read_checkpoint(tmp_path / "ints.pth")


def test_training_objects_are_read_inertly_and_code_never_runs(tmp_path: Path, trained: CenterPoint) -> None:
    path = tmp_path / "training.pth"
    torch.save({"state_dict": trained.state_dict(), "meta": {"epoch": 2, "hub": TrainingStateObject()},
                "message_hub": TrainingStateObject()}, path)
    with pytest.raises(Exception):
        torch.load(path, weights_only=True)  # what a plain weights-only load does with such files
    fresh = CenterPoint(load_config("tiny"))
    meta = load_checkpoint(fresh, path)
    assert meta["epoch"] == 2 and "TrainingStateObject" in repr(meta["hub"])
    assert_same_weights(fresh, trained)

    marker = tmp_path / "ran"
    torch.save({"state_dict": trained.state_dict(), "meta": {"x": RunsCommand(marker)}}, tmp_path / "a.pth")
    load_checkpoint(CenterPoint(load_config("tiny")), tmp_path / "a.pth")
    torch.save(RunsCommand(marker), tmp_path / "b.pth")
    with pytest.raises(CheckpointError, match="system, which is not read"):
        read_checkpoint(tmp_path / "b.pth")
    assert not marker.exists()


def test_build_model(tmp_path: Path, trained: CenterPoint) -> None:
    path = save_checkpoint(trained, tmp_path / "m.pth", meta={})
    model = build_model(load_config("tiny"), checkpoint=path)
    assert not model.training
    assert_same_weights(model, trained)
    with pytest.raises(ConfigError, match="not a torch device"):
        build_model(load_config("tiny"), device="gpu7")
    with pytest.raises(ConfigError, match="needs a ModelConfig"):
        build_model("tiny")  # type: ignore[arg-type]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_build_model_without_cuda() -> None:
    with pytest.raises(BackendUnavailableError, match="CUDA is not available"):
        build_model(load_config("tiny"), device="cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_build_model_on_cuda() -> None:
    model = build_model(load_config("tiny"), device="cuda")
    assert next(model.parameters()).is_cuda


@pytest.mark.parametrize("value, message", [
    (float("nan"), r"tensor 'pts_bbox_head.shared_conv.conv.weight' \[.*\] holds 1 NaN/Inf value\(s\)"),
    (float("inf"), r"tensor 'pts_bbox_head.shared_conv.conv.weight' \[.*\] holds 1 NaN/Inf value\(s\)"),
])
def test_non_finite_weights_are_refused_with_the_tensor_named(trained: CenterPoint, value, message) -> None:
    state = {k: v.clone() for k, v in trained.state_dict().items()}
    key = "pts_bbox_head.shared_conv.conv.weight"
    assert key in state
    state[key].view(-1)[3] = value
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(CenterPoint(load_config("tiny")), {"state_dict": state})


def test_integer_weights_are_refused_with_the_tensor_named(trained: CenterPoint) -> None:
    state = {k: v.clone() for k, v in trained.state_dict().items()}
    key = "pts_voxel_encoder.pfn_layers.0.linear.weight"
    assert key in state
    state[key] = state[key].to(torch.int32)
    with pytest.raises(CheckpointError, match=rf"tensor '{key}' has dtype torch.int32; .* allowed: a floating-point"):
        load_checkpoint(CenterPoint(load_config("tiny")), {"state_dict": state})
