"""A task's 1 x 1 branches as one per-pixel MLP, on CUDA one Triton kernel.

With ``final_kernel: 1`` (the AWML j6gen2 models) every branch of a
:class:`~centerpoint_deploy.model.head.SeparateHead` is ``conv1x1 (+BN) -> ReLU -> conv1x1``
on the same shared features: per pixel, ``C`` inputs to ``head_conv`` hidden units to ``k``
maps. Run as six branches, each reads the shared ``[B, C, H, W]`` map and writes and reads back
its own ``[B, head_conv, H, W]`` hidden map (about 1.3 GB a frame on the 760 x 760 grid in
fp16), so they are bound by memory, not arithmetic. :class:`FusedBranches` computes all of
them per tile of pixels with the hidden units in registers: the shared map is read once and
only the ``sum(k)`` float32 maps are written.

The weights come from the branches after :func:`~centerpoint_deploy.model.surgery.fold_batchnorm`
(their norms are gone); the result equals the branches up to float rounding (the maps are
accumulated in float32 and not rounded to the network's dtype).
"""

from __future__ import annotations

from types import ModuleType
from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional

from centerpoint_deploy.model.head import SeparateHead
from centerpoint_deploy.model.surgery import ConvReLU2d
from centerpoint_deploy.model.triton_modules import triton_launcher


def _next_power_of_two(value: int, least: int = 16) -> int:
    return max(least, 1 << (value - 1).bit_length())


@triton_launcher
def _triton_launcher(triton: ModuleType, tl: ModuleType) -> Callable[..., None]:
    """The Triton kernel's launcher (``_triton_launcher()`` is ``None`` where Triton is not importable)."""

    @triton.jit
    def branches_kernel(x_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, out_ptr, rows, pixels, channels, maps,
                        C: tl.constexpr, HID: tl.constexpr, NB: tl.constexpr, OUT: tl.constexpr,
                        BLOCK: tl.constexpr, IEEE: tl.constexpr):
        # x: [rows, channels] (channels-last pixels); w1: [NB, C, HID]; b1: [NB, HID];
        # w2: [NB, HID, OUT] (branch b's columns only); b2: [OUT]; out: [B, maps, pixels] float32
        row = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        live = row < rows
        cin = tl.arange(0, C)
        hid = tl.arange(0, HID)
        col = tl.arange(0, OUT)
        x = tl.load(x_ptr + row[:, None] * channels + cin[None, :], mask=live[:, None] & (cin[None, :] < channels),
                    other=0.0)
        acc = tl.zeros((BLOCK, OUT), dtype=tl.float32)
        for b in range(NB):  # a loop, not unrolled: one set of shared-memory operand buffers
            w1 = tl.load(w1_ptr + b * C * HID + cin[:, None] * HID + hid[None, :])
            if IEEE:
                hidden = tl.dot(x, w1, input_precision="ieee")
            else:
                hidden = tl.dot(x, w1)
            hidden = tl.maximum(hidden + tl.load(b1_ptr + b * HID + hid)[None, :], 0.0).to(x.dtype)
            w2 = tl.load(w2_ptr + b * HID * OUT + hid[:, None] * OUT + col[None, :])
            if IEEE:
                acc += tl.dot(hidden, w2, input_precision="ieee")
            else:
                acc += tl.dot(hidden, w2)
        acc += tl.load(b2_ptr + col)[None, :]
        batch, pixel = row // pixels, row % pixels
        target = out_ptr + (batch * maps * pixels + pixel)[:, None] + col[None, :] * pixels
        tl.store(target, acc, mask=live[:, None] & (col[None, :] < maps))

    def launch(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, out: Tensor, block: int = 128,
               num_warps: int = 4) -> None:
        rows, channels = x.shape
        branches, padded_in, hidden = w1.shape
        grid = (triton.cdiv(rows, block),)
        branches_kernel[grid](x, w1, b1, w2, b2, out, rows, out.shape[2], channels, out.shape[1], C=padded_in,
                              HID=hidden, NB=branches, OUT=w2.shape[2], BLOCK=block, IEEE=x.dtype == torch.float32,
                              num_warps=num_warps, num_stages=1)

    return launch


class FusedBranches(nn.Module):
    """Every branch of one :class:`~centerpoint_deploy.model.head.SeparateHead` (two 1 x 1 convs each,
    norms folded) as one per-pixel MLP.

    Args:
        branches: ``(map name, first conv, last conv)`` in output order (heatmap first); each
            first conv ``Conv2d(C, hidden, 1)`` with bias, followed by a ReLU, each last conv
            ``Conv2d(hidden, k, 1)`` with bias; one ``C`` and ``hidden`` for all.
    """

    def __init__(self, branches: list[tuple[str, nn.Conv2d, nn.Conv2d]]) -> None:
        super().__init__()
        first = branches[0][1]
        channels, hidden = first.in_channels, first.out_channels
        widths = [conv.out_channels for _, _, conv in branches]
        # 64 output columns at least: Triton 3.6's Hopper dot gave wrong results (and read past its
        # shared memory) for this kernel's second product with 16 or 32 (seen on an H200)
        padded_in, padded_hidden, padded_out = (_next_power_of_two(channels), _next_power_of_two(hidden),
                                                _next_power_of_two(sum(widths), least=64))
        dtype, device = first.weight.dtype, first.weight.device
        w1 = torch.zeros(len(branches), padded_in, padded_hidden, dtype=dtype, device=device)
        b1 = torch.zeros(len(branches), padded_hidden, dtype=dtype, device=device)
        w2 = torch.zeros(len(branches), padded_hidden, padded_out, dtype=dtype, device=device)
        b2 = torch.zeros(padded_out, dtype=dtype, device=device)
        self.maps: dict[str, tuple[int, int]] = {}
        start = 0
        for index, (name, conv_in, conv_out) in enumerate(branches):
            width = conv_out.out_channels
            w1[index, :channels, :hidden] = conv_in.weight.detach()[:, :, 0, 0].t()
            b1[index, :hidden] = conv_in.bias.detach()
            w2[index, :hidden, start: start + width] = conv_out.weight.detach()[:, :, 0, 0].t()
            b2[start: start + width] = conv_out.bias.detach()
            self.maps[name] = (start, start + width)
            start += width
        self.num_maps = start
        self._launch = _triton_launcher()  # looked up here, not in forward: torch.compile traces forward
        self.register_buffer("w1", w1)
        self.register_buffer("b1", b1)
        self.register_buffer("w2", w2)
        self.register_buffer("b2", b2)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """x (Tensor[B, C, H, W]) -> ``{map name: Tensor[B, k, H, W]}`` float32, views of one ``[B, sum(k), H, W]`` map."""
        batch, channels, height, width = x.shape
        pixels = x.permute(0, 2, 3, 1).reshape(-1, channels)  # [B*H*W, C]; a view when x is channels-last
        launch = self._launch if x.is_cuda else None
        if launch is not None:
            out = torch.empty(batch, self.num_maps, height * width, dtype=torch.float32, device=x.device)
            launch(pixels.contiguous(), self.w1, self.b1, self.w2, self.b2, out)
            maps = out.view(batch, -1, height, width)
        else:
            maps = self._matmuls(pixels)[:, : self.num_maps].view(batch, height, width, -1).permute(0, 3, 1, 2)
        return {name: maps[:, start:stop] for name, (start, stop) in self.maps.items()}

    def _matmuls(self, pixels: Tensor) -> Tensor:
        """The kernel's arithmetic as two float32 matmuls (the hidden units rounded to the
        network's dtype between them): ``pixels [M, C]`` -> ``Tensor[M, OUT]`` float32."""
        branches, padded_in, hidden = self.w1.shape
        inputs = functional.pad(pixels, (0, padded_in - pixels.shape[1])).float()
        w1 = self.w1.permute(1, 0, 2).reshape(padded_in, branches * hidden).float()
        hiddens = torch.relu(inputs @ w1 + self.b1.reshape(-1).float()).to(pixels.dtype)  # [M, NB * HID]
        return hiddens.float() @ self.w2.reshape(branches * hidden, -1).float() + self.b2.float()


def _one_by_one_branch(branch: nn.Module) -> tuple[nn.Conv2d, nn.Conv2d] | None:
    """``(first conv, last conv)`` of a folded ``[ConvBNReLU, Conv2d]`` branch of 1 x 1 convs, else ``None``."""
    if not isinstance(branch, nn.Sequential) or len(branch) != 2:
        return None
    block, last = branch[0], branch[1]
    conv = getattr(block, "conv", None)
    if isinstance(conv, ConvReLU2d):
        conv, relu = conv.conv, True
    else:
        relu = isinstance(getattr(block, "activate", None), nn.ReLU)
    if not (relu and isinstance(getattr(block, "bn", None), nn.Identity)):
        return None
    convs = (conv, last)
    if not all(type(c) is nn.Conv2d and c.kernel_size == (1, 1) and c.stride == (1, 1) and c.padding == (0, 0)
               and c.groups == 1 and c.bias is not None for c in convs):
        return None
    return conv, last


def fuse_head_branches(module: nn.Module) -> nn.Module:
    """Replace each ``SeparateHead`` whose branches are all ``1 x 1 conv -> ReLU -> 1 x 1 conv``
    (norms folded by :func:`~centerpoint_deploy.model.surgery.fold_batchnorm` first) with one
    :class:`FusedBranches`, in place; other heads are left as they are. Its maps are float32.
    """
    for parent in list(module.modules()):
        for name, child in list(parent._modules.items()):
            if not isinstance(child, SeparateHead):
                continue
            names = ("heatmap", *child.map_names)
            convs = [_one_by_one_branch(getattr(child, n)) for n in names]
            widths = {(c[0].in_channels, c[0].out_channels) for c in convs if c is not None}
            if all(c is not None for c in convs) and len(widths) == 1:
                parent._modules[name] = FusedBranches([(n, *c) for n, c in zip(names, convs)])
    return module
