"""PyTorch fast paths on the CPU against the fp32 reference, and the backend variants.

Documented tolerances (random tiny model, outputs of order 1):
- ``fuse_batchnorm`` / ``channels_last`` in fp32: max |difference| <= 1e-4 (float rounding only);
- ``bf16``: max |difference| <= 3 % of the output's largest magnitude (8-bit mantissa).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from centerpoint_deploy import contract
from centerpoint_deploy.backends.factory import PYTORCH_VARIANTS, create_backends
from centerpoint_deploy.backends.pytorch import (ConvReLU2d, TorchEncoderBackend, TorchHeadBackend, TorchOptions,
                                                 fold_batchnorm, fuse_conv_relu)
from centerpoint_deploy.export.precision.fp16 import convert_onnx_to_fp16
from centerpoint_deploy.config import load_config
from centerpoint_deploy.errors import BackendError, ExportError
from centerpoint_deploy.model import build_model


@pytest.fixture(scope="module")
def config():
    return load_config("tiny")


@pytest.fixture(scope="module")
def model(config) -> nn.Module:
    """The tiny model with non-trivial BatchNorm statistics (so folding changes the weights)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        net = build_model(config)
        for module in net.modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.data.uniform_(0.5, 1.5)
                module.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


def head_outputs(model: nn.Module, config, options: TorchOptions, bev: torch.Tensor) -> dict[str, torch.Tensor]:
    with TorchHeadBackend(model, config, options=options) as head:
        return head.infer({contract.HEAD_INPUT: bev})


@pytest.fixture(scope="module")
def bev() -> torch.Tensor:
    return torch.relu(torch.randn(1, 32, 64, 64, generator=torch.Generator().manual_seed(0)))


@pytest.fixture(scope="module")
def reference(model, config, bev) -> dict[str, torch.Tensor]:
    return head_outputs(model, config, TorchOptions(), bev)


def test_reference_options_run_the_shared_model_unchanged(model, config, bev, reference) -> None:
    with torch.inference_mode():
        direct = model.forward_dense(bev)[0]
    assert all(torch.equal(reference[name], direct[name]) for name in contract.HEAD_OUTPUTS)
    with TorchEncoderBackend(model, config) as encoder:
        features = torch.randn(9, 32, 11)
        with torch.inference_mode():
            assert torch.equal(encoder.infer({contract.ENCODER_INPUT: features})[contract.ENCODER_OUTPUT],
                               model.encode(features))
        assert encoder.name == "pytorch-cpu" and encoder.last_inference_time >= 0


@pytest.mark.parametrize("options", [TorchOptions(fuse_batchnorm=True), TorchOptions(channels_last=True),
                                     TorchOptions(fuse_batchnorm=True, channels_last=True)])
def test_fp32_layout_and_folding_change_only_rounding(model, config, bev, reference, options) -> None:
    got = head_outputs(model, config, options, bev)
    for name in contract.HEAD_OUTPUTS:
        assert got[name].dtype == torch.float32 and got[name].is_contiguous()
        assert (got[name] - reference[name]).abs().max() <= 1e-4, name
    # the shared model keeps its BatchNorms: folding works on a copy
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_bf16_stays_within_the_documented_tolerance(model, config, bev, reference) -> None:
    got = head_outputs(model, config, TorchOptions(precision="bf16", channels_last=True, fuse_batchnorm=True), bev)
    for name in contract.HEAD_OUTPUTS:
        assert got[name].dtype == torch.float32
        scale = reference[name].abs().max()
        assert (got[name] - reference[name]).abs().max() <= 0.03 * scale, name


def test_fold_batchnorm_replaces_every_norm_after_a_conv(model) -> None:
    import copy

    folded = fold_batchnorm(copy.deepcopy(model))
    dense = [folded.pts_backbone, folded.pts_neck, folded.pts_bbox_head]
    assert not any(isinstance(m, nn.BatchNorm2d) for part in dense for m in part.modules())
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in folded.modules())
    features = torch.randn(9, 32, 11, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():  # the PFN's BatchNorm1d folded into its linear layer
        assert (folded.encode(features) - model.encode(features)).abs().max() <= 1e-5


def test_fuse_conv_relu_pairs_every_conv_with_its_relu(model, config, bev, reference) -> None:
    import copy

    relus = sum(isinstance(m, nn.ReLU) for m in model.modules())
    deconvs = sum(isinstance(m, nn.ConvTranspose2d) for m in model.modules())
    fused = fuse_conv_relu(fold_batchnorm(copy.deepcopy(model)))
    # every ReLU after a Conv2d is folded in; those after a transposed convolution stay
    assert sum(isinstance(m, ConvReLU2d) for m in fused.modules()) == relus - deconvs > 0
    assert sum(isinstance(m, nn.ReLU) for m in fused.modules()) == deconvs
    got = head_outputs(model, config, TorchOptions(fuse_batchnorm=True, fuse_relu=True), bev)
    folded = head_outputs(model, config, TorchOptions(fuse_batchnorm=True), bev)
    for name in contract.HEAD_OUTPUTS:  # on the CPU the pair runs as conv then relu: no change at all
        assert torch.equal(got[name], folded[name]), name
        assert (got[name] - reference[name]).abs().max() <= 1e-4, name


@pytest.mark.parametrize("options, message", [
    (TorchOptions(precision="fp8"), "precision 'fp8' is not one of"),
    (TorchOptions(cuda_graph=True), "cuda_graph needs a CUDA device"),
    (TorchOptions(precision="fp16"), "'fp16' runs on CUDA only"),
    (TorchOptions(cuda_graph=True, compile=True), "needs a CUDA device"),
    (TorchOptions(fuse_relu=True), "fuse_relu needs fuse_batchnorm"),
    (TorchOptions(max_autotune=True), "max_autotune is a torch.compile mode; set compile too"),
])
def test_bad_options_are_refused(model, config, options, message) -> None:
    with pytest.raises(BackendError, match=message):
        TorchHeadBackend(model, config, options=options)


def test_options_label_and_backend_name(model, config) -> None:
    options = TorchOptions(precision="bf16", channels_last=True, fuse_batchnorm=True)
    assert options.label == "bf16+channels_last+fuse_batchnorm" and not options.is_reference
    assert TorchHeadBackend(model, config, options=options).name == "pytorch-cpu-bf16+channels_last+fuse_batchnorm"


def test_factory_variant_kinds(config) -> None:
    encoder, head, rot = create_backends("pytorch-bf16", config)
    assert rot is False and head.options == TorchOptions(**PYTORCH_VARIANTS["pytorch-bf16"])
    assert encoder.options == head.options
    with pytest.raises(BackendError, match="'fp16' runs on CUDA only"):
        create_backends("pytorch-fp16", config)
    with pytest.raises(BackendError, match="pytorch-tf32"):
        create_backends("pytorch-fp64", config)


def test_fp16_onnx_copy_keeps_float32_io(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    import onnxruntime

    source = tmp_path / "conv.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(nn.Sequential(nn.Conv2d(32, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1)).eval(),
                          (torch.randn(1, 32, 8, 8),), str(source), dynamo=False, opset_version=17,
                          input_names=[contract.HEAD_INPUT], output_names=["maps"])
    target = convert_onnx_to_fp16(source, tmp_path / "fp16" / "head.onnx")
    graph = onnx.load(str(target))
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in [*graph.graph.input, *graph.graph.output])
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in graph.graph.initializer)
    x = torch.randn(1, 32, 8, 8).numpy()
    got = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"]).run(None, {contract.HEAD_INPUT: x})
    ref = onnxruntime.InferenceSession(str(source), providers=["CPUExecutionProvider"]).run(None, {contract.HEAD_INPUT: x})
    for g, r in zip(got, ref):
        assert abs(g - r).max() <= 1e-2 * max(1.0, abs(r).max())
    with pytest.raises(ExportError, match="does not exist"):
        convert_onnx_to_fp16(tmp_path / "missing.onnx", tmp_path / "x.onnx")
