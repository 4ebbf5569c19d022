"""The neck's ``kernel == stride`` branches as matmuls into one map (``fuse_neck``): the same map as the neck."""

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
