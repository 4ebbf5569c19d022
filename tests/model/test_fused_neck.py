"""The neck's ``kernel == stride`` branches as matmuls into one map (``fuse_neck``): the same map as the neck.

The CPU runs each branch as a matmul and a copy into its patches; the Triton kernel runs on CUDA
(``-m cuda``) and, where the ``triton`` package is installed, in Triton's interpreter on the CPU.
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
from centerpoint_deploy.errors import BackendError
from centerpoint_deploy.model import build_model
from centerpoint_deploy.model.fused_neck import MatmulNeck, _PatchMatmul, fuse_neck_branches
from centerpoint_deploy.model.neck import SECONDFPN
from centerpoint_deploy.model.surgery import fold_batchnorm, fuse_conv_relu
from tests.model.triton_interpreter import interpreted_output


def _model(config, seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_model(config)
        for module in net.modules():  # non-trivial statistics: folding changes the weights
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.bias.data.uniform_(-0.2, 0.2)
        return net.eval()


@pytest.fixture(scope="module")
def config():
    return load_config("tiny")


@pytest.mark.parametrize("with_relu_fused", [False, True])
@pytest.mark.parametrize("strides, matmuls", [((1, 2, 4), 3), ((0.5, 1, 2), 2)])
def test_matmul_neck_gives_the_neck_map(config, with_relu_fused, strides, matmuls) -> None:
    cfg = replace(config, neck=replace(config.neck, upsample_strides=strides),
                  decode=replace(config.decode, out_size_factor=2 if strides[0] < 1 else 1))
    folded = fold_batchnorm(_model(cfg, 1))
    if with_relu_fused:
        fuse_conv_relu(folded)
    bev = torch.relu(torch.randn(2, 32, 24, 40, generator=torch.Generator().manual_seed(3)))
    with torch.inference_mode():
        stages = folded.pts_backbone(bev)
        want = folded.pts_neck(stages)
        fused = fuse_neck_branches(copy.deepcopy(folded))
        assert isinstance(fused.pts_neck, MatmulNeck)
        # a stride-0.5 branch (a conv of kernel 2, stride 2) runs as it is and is copied in
        assert sum(isinstance(b, _PatchMatmul) for b in fused.pts_neck.branches) == matmuls
        got = fused.pts_neck(stages)
    assert got.shape == want.shape and got.is_contiguous(memory_format=torch.channels_last)
    assert (got - want).abs().max() <= 1e-5


def test_unfolded_necks_are_left_alone(config) -> None:
    net = fuse_neck_branches(_model(config, 2))  # BatchNorms still there: no bias to put in a matmul
    assert isinstance(net.pts_neck, SECONDFPN)


def test_backend_option_gives_the_reference_maps(config) -> None:
    model = _model(config, 4)
    bev = torch.relu(torch.randn(1, 32, 32, 48, generator=torch.Generator().manual_seed(5)))
    with TorchHeadBackend(model, config) as head:
        reference = head.infer({contract.HEAD_INPUT: bev})
    options = TorchOptions(fuse_batchnorm=True, fuse_neck=True, fuse_heads=True, channels_last=True)
    with TorchHeadBackend(model, config, options=options) as head:
        got = head.infer({contract.HEAD_INPUT: bev})
        assert isinstance(head._network.pts_neck, MatmulNeck)
    for name, value in got.items():
        assert value.is_contiguous() and (value - reference[name]).abs().max() <= 1e-4, name
    with pytest.raises(BackendError, match="fuse_neck needs fuse_batchnorm"):
        TorchHeadBackend(model, config, options=TorchOptions(fuse_neck=True))


@pytest.mark.cuda
def test_matmul_neck_on_cuda_in_fp16(config) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    folded = fold_batchnorm(_model(config, 6)).cuda().half().to(memory_format=torch.channels_last)
    bev = torch.relu(torch.randn(1, 32, 64, 96, device="cuda")).half().contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        stages = folded.pts_backbone(bev)
        want = folded.pts_neck(stages).float()
        got = fuse_neck_branches(copy.deepcopy(folded)).pts_neck(stages).float()
    assert (got - want).abs().max() <= 2e-2 * want.abs().max()


_INTERPRETED = """
import torch
from centerpoint_deploy.model.fused_neck import _PatchMatmul, _triton_launcher
torch.manual_seed(0)
worst = 0.0
with torch.no_grad():
    for layer, h, w in [(torch.nn.ConvTranspose2d(24, 8, 2, 2), 5, 7), (torch.nn.ConvTranspose2d(40, 16, 4, 4), 3, 4),
                        (torch.nn.Conv2d(24, 8, 1), 6, 5)]:
        torch.nn.init.uniform_(layer.bias, -0.5, 0.5)
        matmul = _PatchMatmul(layer)
        x = torch.randn(2, layer.in_channels, h, w).contiguous(memory_format=torch.channels_last)
        k, width = matmul.scale, layer.out_channels
        out = torch.full((2, h * k, w * k, 8 + width + 4), float("nan"))
        pixels = x.permute(0, 2, 3, 1).reshape(-1, layer.in_channels).contiguous()
        _triton_launcher()(pixels, h, w, matmul.weight, matmul.bias, k, out, 8, block_m=16, block_n=16, block_k=16)
        assert out[..., :8].isnan().all() and out[..., 8 + width:].isnan().all()  # other channels untouched
        want = torch.relu(layer(x)).permute(0, 2, 3, 1)
        worst = max(worst, float((out[..., 8: 8 + width] - want).abs().max()))
print(worst)
"""


def test_triton_kernel_in_the_interpreter_gives_the_branch() -> None:
    assert float(interpreted_output(_INTERPRETED)) <= 1e-5


@pytest.mark.cuda
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-4), (torch.float16, 1e-2)])
@pytest.mark.parametrize("k, c_in, size", [(1, 64, 760), (2, 128, 380), (4, 256, 190)])
def test_triton_kernel_on_j6gen2_shapes_gives_the_matmul(dtype, tolerance, k, c_in, size) -> None:
    """The j6gen2 neck's branches at full size, into the middle channels of the 384-channel map."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    generator = torch.Generator().manual_seed(k)
    layer = nn.ConvTranspose2d(c_in, 128, k, k) if k > 1 else nn.Conv2d(c_in, 128, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * 0.05)
        layer.bias.copy_(torch.randn(128, generator=generator) * 0.1)
    matmul = _PatchMatmul(layer).cuda().to(dtype)
    assert matmul._launch is not None
    x = torch.randn(1, c_in, size, size, generator=generator).relu().cuda().to(dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    got = torch.full((1, size * k, size * k, 384), float("nan"), device="cuda", dtype=dtype)
    want = got.clone()
    matmul.write(x, got, 128)
    matmul._launch = None  # the CPU path's matmul and copy, on CUDA
    matmul.write(x, want, 128)
    assert got[..., :128].isnan().all() and got[..., 256:].isnan().all()
    difference = (got[..., 128:256].float() - want[..., 128:256].float()).abs().max()
    assert difference <= tolerance * max(1.0, float(want[..., 128:256].abs().max()))
