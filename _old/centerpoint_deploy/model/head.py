"""CenterHead: a shared 3x3 conv, then one SeparateHead per task (mmdet3d structure)."""

from __future__ import annotations

from torch import Tensor, nn

from centerpoint_deploy.config.schema import HeadConfig


class ConvBNReLU(nn.Module):
    """Conv (no bias) -> BatchNorm2d -> ReLU with mmcv ``ConvModule``'s names ``conv`` and ``bn``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, eps: float, momentum: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=eps, momentum=momentum)
        self.activate = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        """x (Tensor[B, C_in, h, w]) -> Tensor[B, C_out, h, w]."""
        return self.activate(self.bn(self.conv(x)))


def branch(in_channels: int, out_channels: int, num_conv: int, cfg: HeadConfig) -> nn.Sequential:
    """One output map: ``num_conv - 1`` :class:`ConvBNReLU` then a conv with bias, all ``final_kernel``."""
    layers: list[nn.Module] = []
    c_in = in_channels
    for _ in range(num_conv - 1):
        layers.append(ConvBNReLU(c_in, cfg.head_conv, cfg.final_kernel, cfg.norm_eps, cfg.norm_momentum))
        c_in = cfg.head_conv
    layers.append(nn.Conv2d(c_in, out_channels, cfg.final_kernel, padding=cfg.final_kernel // 2, bias=True))
    return nn.Sequential(*layers)


class SeparateHead(nn.Module):
    """One branch per output map, as attributes named after the maps.

    The branches are registered as reg, height, dim, rot, vel, heatmap (mmdet3d's state_dict
    order); :meth:`forward` returns them in the ONNX order heatmap, reg, height, dim, rot, vel.
    """

    def __init__(self, num_classes: int, cfg: HeadConfig) -> None:
        super().__init__()
        self.map_names = tuple(name for name, _, _ in cfg.common_heads)
        for name, channels, num_conv in cfg.common_heads:
            self.add_module(name, branch(cfg.share_conv_channel, channels, num_conv, cfg))
        self.heatmap = branch(cfg.share_conv_channel, num_classes, cfg.heatmap_num_conv, cfg)
        nn.init.constant_(self.heatmap[-1].bias, cfg.init_bias)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """x (Tensor[B, share_conv_channel, h, w]) -> ``{"heatmap": logits [B, n_cls, h, w], "reg": [B, 2, h, w], ...}``."""
        out = {"heatmap": self.heatmap(x)}
        for name in self.map_names:
            out[name] = getattr(self, name)(x)
        return out


class CenterHead(nn.Module):
    """``shared_conv`` (3x3 :class:`ConvBNReLU`) then ``task_heads[t]`` (:class:`SeparateHead`) per task."""

    def __init__(self, cfg: HeadConfig) -> None:
        super().__init__()
        self.shared_conv = ConvBNReLU(cfg.in_channels, cfg.share_conv_channel, 3, cfg.norm_eps, cfg.norm_momentum)
        self.task_heads = nn.ModuleList(SeparateHead(task.num_classes, cfg) for task in cfg.tasks)

    def forward(self, x: Tensor) -> list[dict[str, Tensor]]:
        """x (Tensor[B, in_channels, h, w]) -> per task ``{heatmap, reg, height, dim, rot, vel}`` maps of size h x w.

        ``heatmap`` holds logits (no sigmoid); ``dim`` is the log of (l, w, h) when ``norm_bbox``;
        ``rot`` is (sin, cos) of the yaw.
        """
        shared = self.shared_conv(x)
        return [task_head(shared) for task_head in self.task_heads]
