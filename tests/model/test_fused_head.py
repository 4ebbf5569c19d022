"""A task's 1 x 1 branches as one MLP (``fuse_heads``): the same maps as the branches.

The CPU runs the MLP as two matmuls; the Triton kernel runs on CUDA (``-m cuda``) and, where
the ``triton`` package is installed, in Triton's interpreter on the CPU.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
from torch import nn

from centerpoint_deploy import contract
from centerpoint_deploy.backends.pytorch import TorchHeadBackend, TorchOptions
from centerpoint_deploy.config import load_config
from centerpoint_deploy.config.schema import HeadTaskConfig
from centerpoint_deploy.errors import BackendError
from centerpoint_deploy.model import build_model
from centerpoint_deploy.model.fused_head import FusedBranches, fuse_head_branches
from centerpoint_deploy.model.head import SeparateHead
from centerpoint_deploy.model.surgery import fold_batchnorm, fuse_conv_relu
from tests.model.triton_interpreter import interpreted_output


def _with_statistics(net: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics, so that folding changes the weights."""
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


@pytest.fixture(scope="module")
def config():
    tiny = load_config("tiny")
    tasks = (HeadTaskConfig(("car", "truck")), HeadTaskConfig(("bus", "bicycle", "pedestrian")))
    # two tasks: two heads to fuse
    return replace(tiny, head=replace(tiny.head, tasks=tasks), nms=replace(tiny.nms, min_radius=(1.0, 1.0)))


@pytest.fixture(scope="module")
def model(config) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        return _with_statistics(build_model(config))


@pytest.fixture(scope="module")
def bev() -> torch.Tensor:
    return torch.relu(torch.randn(2, 32, 24, 40, generator=torch.Generator().manual_seed(2)))


def _heads(net: nn.Module) -> list[nn.Module]:
    return list(net.pts_bbox_head.task_heads)


@pytest.mark.parametrize("with_relu_fused", [False, True])
def test_every_one_by_one_head_becomes_one_mlp_with_the_same_maps(model, bev, with_relu_fused) -> None:
    folded = fold_batchnorm(copy.deepcopy(model))
    if with_relu_fused:
        fuse_conv_relu(folded)
    fused = fuse_head_branches(copy.deepcopy(folded))
    assert all(isinstance(head, FusedBranches) for head in _heads(fused)) and len(_heads(fused)) == 2
    with torch.inference_mode():
        shared = folded.pts_bbox_head.shared_conv(folded.pts_neck(folded.pts_backbone(bev)))
        for branches, mlp in zip(_heads(folded), _heads(fused)):
            want, got = branches(shared), mlp(shared)
            assert list(got) == list(want)  # heatmap first, then reg, height, dim, rot, vel
            for name in want:
                assert got[name].dtype == torch.float32 and got[name].shape == want[name].shape
                assert (got[name] - want[name]).abs().max() <= 1e-5, name


def test_heads_with_three_by_three_branches_are_left_alone(config) -> None:
    three = replace(config, head=replace(config.head, final_kernel=3))
    net = fold_batchnorm(build_model(three).eval())
    fuse_head_branches(net)
    assert all(isinstance(head, SeparateHead) for head in _heads(net))


def test_unfolded_heads_are_left_alone(model) -> None:
    net = fuse_head_branches(copy.deepcopy(model))  # BatchNorms still in the branches
    assert all(isinstance(head, SeparateHead) for head in _heads(net))


def test_backend_option_gives_the_reference_maps(model, config, bev) -> None:
    with TorchHeadBackend(model, config) as head:
        reference = head.infer({contract.HEAD_INPUT: bev})
    options = TorchOptions(fuse_batchnorm=True, fuse_heads=True, channels_last=True)
    with TorchHeadBackend(model, config, options=options) as head:
        got = head.infer({contract.HEAD_INPUT: bev})
        assert any(isinstance(m, FusedBranches) for m in head._network.modules())
    assert list(got) == list(reference)
    for name, value in got.items():
        assert value.dtype == torch.float32 and value.is_contiguous()
        assert (value - reference[name]).abs().max() <= 1e-4, name
    assert any(isinstance(m, SeparateHead) for m in model.modules())  # fused on a copy
    with pytest.raises(BackendError, match="fuse_heads needs fuse_batchnorm"):
        TorchHeadBackend(model, config, options=TorchOptions(fuse_heads=True))


_INTERPRETED = """
import torch
from centerpoint_deploy.model.fused_head import FusedBranches, _triton_launcher
torch.manual_seed(0)
def conv(i, o):
    c = torch.nn.Conv2d(i, o, 1)
    torch.nn.init.uniform_(c.bias, -0.5, 0.5)
    return c
mlp = FusedBranches([("heatmap", conv(24, 16), conv(16, 3)), ("reg", conv(24, 16), conv(16, 2))])
x = torch.randn(2 * 5 * 7, 24)
out = torch.empty(2, mlp.num_maps, 35)
_triton_launcher()(x, mlp.w1, mlp.b1, mlp.w2, mlp.b2, out, block=16)
want = mlp._matmuls(x)[:, :mlp.num_maps].view(2, 35, -1).permute(0, 2, 1)
print(float((out - want).abs().max()))
"""


def test_triton_kernel_in_the_interpreter_equals_the_matmuls() -> None:
    assert float(interpreted_output(_INTERPRETED)) <= 1e-5


@pytest.mark.cuda
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-4), (torch.float16, 2e-3)])
def test_triton_kernel_on_cuda_equals_the_matmuls(model, bev, dtype, tolerance) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    net = fuse_head_branches(fold_batchnorm(copy.deepcopy(model))).cuda().to(dtype)
    x = torch.randn(2, 16, 40, 56, device="cuda", dtype=dtype).relu().contiguous(memory_format=torch.channels_last)
    for mlp in _heads(net):
        got = mlp(x)
        want = mlp._matmuls(x.permute(0, 2, 3, 1).reshape(-1, 16)).view(2, 40, 56, -1).permute(0, 3, 1, 2)
        for name, (start, stop) in mlp.maps.items():
            assert (got[name] - want[:, start:stop]).abs().max() <= tolerance, name


@pytest.mark.cuda
def test_triton_kernel_on_a_full_size_map_equals_the_matmuls() -> None:
    """The j6gen2 head's shape (64 channels, six branches of 64 units, 760 x 760 pixels): Triton's
    Hopper code for some tile shapes was wrong only at this size."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    generator = torch.Generator().manual_seed(4)

    def conv(c_in: int, c_out: int) -> nn.Conv2d:
        layer = nn.Conv2d(c_in, c_out, 1)
        with torch.no_grad():
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * 0.1)
            layer.bias.copy_(torch.randn(c_out, generator=generator) * 0.1)
        return layer

    widths = {"heatmap": 5, "reg": 2, "height": 1, "dim": 3, "rot": 2, "vel": 2}
    mlp = FusedBranches([(name, conv(64, 64), conv(64, k)) for name, k in widths.items()]).cuda().half()
    x = torch.randn(1, 64, 760, 760, generator=generator).relu().cuda().half()
    x = x.contiguous(memory_format=torch.channels_last)
    got = mlp(x)
    want = mlp._matmuls(x.permute(0, 2, 3, 1).reshape(-1, 64)).view(1, 760, 760, -1).permute(0, 3, 1, 2)
    for name, (start, stop) in mlp.maps.items():
        assert torch.isfinite(got[name]).all()
        assert (got[name] - want[:, start:stop]).abs().max() <= 2e-3, name
