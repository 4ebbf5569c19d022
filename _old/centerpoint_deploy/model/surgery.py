"""Model surgery for inference speed: fold BatchNorm into the layer before it, fuse Conv2d + ReLU.

Both rewrite a module in place (call them on a copy to keep the original) and find pairs the
same way: consecutive entries of an ``nn.Sequential``, or a module holding ``conv`` then its
follower (mmcv ``ConvModule`` names: ``conv``, ``bn``, ``activate``). Results equal the
unfused network up to float rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _adjacent_children(parent: nn.Module, follower: str) -> list[tuple[str, str]]:
    """Names of child pairs where the first feeds only the second, ``Identity`` children skipped.

    Consecutive entries of an ``nn.Sequential``, or ``("conv", follower)`` in a module holding
    both one after the other (mmcv ``ConvModule`` names: ``conv``, ``bn``, ``activate``).
    """
    names = [name for name, child in parent._modules.items() if not isinstance(child, nn.Identity)]
    if isinstance(parent, nn.Sequential):
        return list(zip(names, names[1:]))
    if "conv" in names and follower in names and names.index(follower) == names.index("conv") + 1:
        return [("conv", follower)]
    return []


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold each eval-mode ``BatchNorm2d`` into the ``Conv2d`` / ``ConvTranspose2d`` it follows, in place.

    A pair is folded where the convolution's output feeds only the norm: consecutive entries
    of an ``nn.Sequential``, and modules holding ``conv`` then ``bn`` (mmcv ``ConvModule``
    names, :class:`~centerpoint_deploy.model.head.ConvBNReLU`). The norm becomes ``Identity``.
    The ``BatchNorm1d`` of each :class:`~centerpoint_deploy.model.voxel_encoder.PFNLayer`
    (``linear`` then ``norm``) is folded into its linear layer the same way.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

    for parent in list(module.modules()):
        linear, norm = parent._modules.get("linear"), parent._modules.get("norm")
        if isinstance(linear, nn.Linear) and isinstance(norm, nn.BatchNorm1d):
            parent._modules["linear"] = fuse_linear_bn_eval(linear.eval(), norm.eval())
            parent._modules["norm"] = nn.Identity()
            continue
        for conv_name, bn_name in _adjacent_children(parent, "bn"):
            conv, bn = parent._modules[conv_name], parent._modules[bn_name]
            if isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(bn, nn.BatchNorm2d):
                fused = fuse_conv_bn_eval(conv.eval(), bn.eval(), transpose=isinstance(conv, nn.ConvTranspose2d))
                parent._modules[conv_name] = fused
                parent._modules[bn_name] = nn.Identity()
    return module


class ConvReLU2d(nn.Module):
    """``relu(conv(x))`` of one ``Conv2d``; on CUDA a single cuDNN convolution + bias + ReLU kernel.

    On other devices (and for convolutions cuDNN's fused call does not take: non-zero padding
    modes, string padding) it runs the two modules one after the other.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv
        self._fusable = conv.padding_mode == "zeros" and not isinstance(conv.padding, str)

    def forward(self, x: Tensor) -> Tensor:
        """x (Tensor[B, C_in, H, W]) -> Tensor[B, C_out, H', W'], never negative."""
        conv = self.conv
        if x.is_cuda and self._fusable:
            return torch.cudnn_convolution_relu(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation,
                                                conv.groups)
        return torch.relu(conv(x))


def fuse_conv_relu(module: nn.Module) -> nn.Module:
    """Replace each ``Conv2d`` directly followed by ``ReLU`` with :class:`ConvReLU2d`, in place.

    Pairs are found as :func:`fold_batchnorm` finds them (after folding, the norm is an
    ``Identity`` and is skipped): consecutive entries of an ``nn.Sequential``, and modules
    holding ``conv``, ``bn``, ``activate``. The ReLU becomes ``Identity``.
    """
    for parent in list(module.modules()):
        for conv_name, relu_name in _adjacent_children(parent, "activate"):
            conv, relu = parent._modules[conv_name], parent._modules[relu_name]
            if type(conv) is nn.Conv2d and isinstance(relu, nn.ReLU):
                parent._modules[conv_name] = ConvReLU2d(conv)
                parent._modules[relu_name] = nn.Identity()
    return module
