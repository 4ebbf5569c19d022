"""SECONDFPN's branches as matmuls that write straight into the concatenated map.

A neck branch whose resampling layer has ``kernel == stride`` (the transposed convs of strides
2 and 4, the 1 x 1 conv of stride 1) maps every input pixel to its own ``k x k`` patch of
output pixels: it is one matmul ``[pixels, C_in] @ [C_in, k * k * C_out]`` and a rearrangement
of its rows into patches. :class:`MatmulNeck` runs it so, with the folded BatchNorm's bias in
the matmul and the ReLU writing the patches into the branch's channels of one preallocated
channels-last map; the concatenation that the neck ends with (a copy of the whole
``[B, 384, H, W]`` map, about 440 MB a frame on the j6gen2 grid in fp16) is gone. cuDNN runs
these transposed convs as backward-data convolutions at a tenth of the machine's dense rate;
the matmuls run near it. On CUDA each matmul is one Triton kernel whose epilogue adds the bias,
applies the ReLU and stores every row straight into its patch: as a matmul and then a copy into
the strided patches, the copy (torch.compile does not fuse it into the matmul) read and wrote
the two upsampling branches' 300 MB a frame again, 0.24 ms on an H200. Other branches run as
they are and are copied into their channels.

The result equals the neck up to float rounding.
"""

from __future__ import annotations

from types import ModuleType
from typing import Callable

import torch
from torch import Tensor, nn

from centerpoint_deploy.model.neck import SECONDFPN
from centerpoint_deploy.model.surgery import ConvReLU2d
from centerpoint_deploy.model.triton_modules import triton_launcher


@triton_launcher
def _triton_launcher(triton: ModuleType, tl: ModuleType) -> Callable[..., None]:
    """The Triton kernel's launcher (``_triton_launcher()`` is ``None`` where Triton is not importable)."""

    @triton.jit
    def patch_matmul_kernel(x_ptr, w_ptr, b_ptr, out_ptr, rows, height, width, in_channels, out_channels,
                            patch_columns, out_width, out_stride, channel_start,
                            SCALE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                            BLOCK_K: tl.constexpr, IEEE: tl.constexpr):
        # x: [rows, in_channels] (channels-last pixels); w: [in_channels, patch_columns], columns
        # (row in patch, column in patch, channel); b: [patch_columns];
        # out: [B, height * SCALE, out_width, out_stride] (channels-last), this branch's channels from channel_start
        row = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        col = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        live_row, live_col = row < rows, col < patch_columns
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for start in range(0, in_channels, BLOCK_K):
            cin = start + tl.arange(0, BLOCK_K)
            live_in = cin < in_channels
            inputs = tl.load(x_ptr + row[:, None].to(tl.int64) * in_channels + cin[None, :],
                             mask=live_row[:, None] & live_in[None, :], other=0.0)
            weights = tl.load(w_ptr + cin[:, None] * patch_columns + col[None, :],
                              mask=live_in[:, None] & live_col[None, :], other=0.0)
            if IEEE:
                acc += tl.dot(inputs, weights, input_precision="ieee")
            else:
                acc += tl.dot(inputs, weights)
        acc = tl.maximum(acc + tl.load(b_ptr + col, mask=live_col, other=0.0).to(tl.float32)[None, :], 0.0)
        # input pixel (b, h, w) -> output pixel (b, h * SCALE + i, w * SCALE + j), channel c
        batch, y, x = row // (height * width), (row // width) % height, row % width
        i, j, c = col // (SCALE * out_channels), (col // out_channels) % SCALE, col % out_channels
        pixel = (batch.to(tl.int64) * height * SCALE + y * SCALE) * out_width + x * SCALE
        offset = (i * out_width + j) * out_stride + channel_start + c
        tl.store(out_ptr + pixel[:, None] * out_stride + offset[None, :], acc.to(out_ptr.dtype.element_ty),
                 mask=live_row[:, None] & live_col[None, :])

    def launch(pixels: Tensor, height: int, width: int, weight: Tensor, bias: Tensor, scale: int, out: Tensor,
               channel_start: int, block_m: int = 128, block_n: int = 128, block_k: int = 64, num_warps: int = 8,
               num_stages: int = 3) -> None:
        """relu(pixels @ weight + bias) in patches into ``out`` from ``channel_start``: pixels
        (contiguous Tensor[B * h * w, C_in], the input's channels-last pixels), out (contiguous
        Tensor[B, h * scale, w * scale, C_total])."""
        rows, in_channels = pixels.shape
        patch_columns = weight.shape[1]
        grid = (triton.cdiv(rows, block_m), triton.cdiv(patch_columns, block_n))
        patch_matmul_kernel[grid](pixels, weight, bias, out, rows, height, width, in_channels,
                                  patch_columns // (scale * scale), patch_columns, out.shape[2], out.shape[3],
                                  channel_start, SCALE=scale, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k,
                                  IEEE=pixels.dtype == torch.float32, num_warps=num_warps, num_stages=num_stages)

    return launch


class _PatchMatmul(nn.Module):
    """A ``kernel == stride`` (transposed) conv with bias, then ReLU, as one matmul.

    Attributes:
        weight: ``Tensor[C_in, k * k * C_out]``, columns ordered ``(row in patch, column in patch, channel)``.
        bias: ``Tensor[k * k * C_out]``.
        scale: output pixels per input pixel along each axis (``k``).
    """

    def __init__(self, layer: nn.Conv2d | nn.ConvTranspose2d) -> None:
        super().__init__()
        weight = layer.weight.detach()
        if isinstance(layer, nn.ConvTranspose2d):  # [C_in, C_out, k, k]
            self.scale = layer.kernel_size[0]
            matrix = weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)
        else:  # a 1 x 1 conv of stride 1: [C_out, C_in, 1, 1]
            self.scale = 1
            matrix = weight[:, :, 0, 0].t()
        self.out_channels = layer.out_channels
        self.register_buffer("weight", matrix.contiguous())
        self.register_buffer("bias", layer.bias.detach().repeat(self.scale * self.scale))
        self._launch = _triton_launcher()  # looked up here, not in forward: torch.compile traces forward

    def write(self, x: Tensor, out: Tensor, channel_start: int) -> None:
        """relu(layer(x)) into ``out``'s channels from ``channel_start``: x (Tensor[B, C_in, h, w]),
        out a contiguous Tensor[B, h*k, w*k, C_total]."""
        batch, channels, height, width = x.shape
        pixels = x.permute(0, 2, 3, 1).reshape(-1, channels)  # a view when x is channels-last
        launch = self._launch if x.is_cuda else None
        if launch is not None:
            launch(pixels.contiguous(), height, width, self.weight, self.bias, self.scale, out, channel_start)
            return
        k = self.scale
        patches = torch.addmm(self.bias, pixels, self.weight).view(batch, height, width, k, k, self.out_channels)
        target = out[..., channel_start: channel_start + self.out_channels]
        into = target.view(batch, height, k, width, k, self.out_channels).permute(0, 1, 3, 2, 4, 5)
        if torch.compiler.is_compiling():  # Dynamo cannot trace out= into a strided view; inductor fuses the two
            into.copy_(patches.clamp_min(0.0))
        else:
            torch.clamp_min(patches, 0.0, out=into)


class MatmulNeck(nn.Module):
    """A SECONDFPN (BatchNorms folded) whose outputs are written into one channels-last map.

    Args:
        deblocks: the neck's branches, each ``Sequential(resampling layer, Identity, ReLU)`` as
            :func:`~centerpoint_deploy.model.surgery.fold_batchnorm` leaves it (or with the ReLU in a
            :class:`~centerpoint_deploy.model.surgery.ConvReLU2d`).
    """

    def __init__(self, deblocks: nn.ModuleList) -> None:
        super().__init__()
        self.branches = nn.ModuleList(_as_matmul(block) or block for block in deblocks)
        self.widths = [_resampling_layer(block).out_channels for block in deblocks]
        self._size = _output_size(_resampling_layer(deblocks[0]))  # every branch lands on this size

    def forward(self, features: list[Tensor]) -> Tensor:
        """features (one Tensor[B, in_channels[i], h_i, w_i] per stage) -> Tensor[B, sum(out_channels), H, W]
        (channels-last strides)."""
        x = features[0]
        height, width = self._size(x.shape[2]), self._size(x.shape[3])
        out = torch.empty(x.shape[0], height, width, sum(self.widths), dtype=x.dtype, device=x.device)
        start = 0
        for branch, x, channels in zip(self.branches, features, self.widths):
            if isinstance(branch, _PatchMatmul):
                branch.write(x, out, start)
            else:
                out[..., start: start + channels].copy_(branch(x).permute(0, 2, 3, 1))
            start += channels
        return out.permute(0, 3, 1, 2)


def _layers(block: nn.Module) -> list[nn.Module]:
    return [m for m in block if not isinstance(m, nn.Identity)] if isinstance(block, nn.Sequential) else [block]


def _resampling_layer(block: nn.Module) -> nn.Conv2d | nn.ConvTranspose2d:
    layer = _layers(block)[0]
    return layer.conv if isinstance(layer, ConvReLU2d) else layer


def _output_size(layer: nn.Conv2d | nn.ConvTranspose2d) -> Callable[[int], int]:
    """The output length along one axis of a square (transposed) conv, from the input length."""
    k, s, p, d = layer.kernel_size[0], layer.stride[0], layer.padding[0], layer.dilation[0]
    if isinstance(layer, nn.ConvTranspose2d):
        extra = layer.output_padding[0]
        return lambda n: (n - 1) * s - 2 * p + d * (k - 1) + extra + 1
    return lambda n: (n + 2 * p - d * (k - 1) - 1) // s + 1


def _as_matmul(block: nn.Module) -> _PatchMatmul | None:
    """The branch as a :class:`_PatchMatmul`, or ``None`` when it is not ``kernel == stride`` (transposed)
    conv with bias + ReLU."""
    layers = _layers(block)
    if len(layers) == 1 and isinstance(layers[0], ConvReLU2d):
        layer = layers[0].conv
    elif len(layers) == 2 and isinstance(layers[1], nn.ReLU):
        layer = layers[0]
    else:
        return None
    if layer.bias is None or layer.groups != 1 or layer.padding != (0, 0) or layer.dilation != (1, 1):
        return None
    if type(layer) is nn.ConvTranspose2d and layer.kernel_size == layer.stride and layer.output_padding == (0, 0) \
            and layer.kernel_size[0] == layer.kernel_size[1]:
        return _PatchMatmul(layer)
    if type(layer) is nn.Conv2d and layer.kernel_size == (1, 1) and layer.stride == (1, 1):
        return _PatchMatmul(layer)
    return None


def fuse_neck_branches(module: nn.Module) -> nn.Module:
    """Replace each ``SECONDFPN`` (norms folded by
    :func:`~centerpoint_deploy.model.surgery.fold_batchnorm` first) that has a branch to run as a
    matmul with a :class:`MatmulNeck`, in place; other necks are left as they are."""
    for parent in list(module.modules()):
        for name, child in list(parent._modules.items()):
            if isinstance(child, SECONDFPN):
                neck = MatmulNeck(child.deblocks)
                if any(isinstance(branch, _PatchMatmul) for branch in neck.branches):
                    parent._modules[name] = neck
    return module
