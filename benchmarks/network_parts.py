"""Where the dense network's time goes: each part of backbone-neck-head alone, as a CUDA graph.

    PYTHONPATH=$PWD python3 benchmarks/network_parts.py --config j6gen2_base --out parts.md
    PYTHONPATH=$PWD python3 benchmarks/network_parts.py --config j6gen2_base_amp --flops   # the count alone

Builds the network as the benchmark's fp16 variants do (``TorchOptions``: fp16, channels-last,
BatchNorm folded, conv + ReLU fused; random weights, timing does not depend on them), captures
each part on the output of the one before (backbone stages, neck branches, the neck's concat,
the head's shared conv, each task's branches) and times 20 + 100 replays with CUDA events.
Each row gives the part's multiply-adds as FLOPs (2 per MAC), its rate, and that rate as a share
of a large fp16 matmul's measured rate (the machine's dense rate). The same for the whole
``forward_dense`` with and without ``fuse_heads`` and ``fuse_neck`` (a task's 1 x 1 branches as one
Triton MLP; the neck's branches as matmuls into one map).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from centerpoint_deploy.backends.pytorch import TorchHeadBackend, TorchOptions
from centerpoint_deploy.benchmark.timing import CudaClock, time_calls
from centerpoint_deploy.config import load_config
from centerpoint_deploy.export.graphs import HeadGraph
from centerpoint_deploy.model import build_model
from centerpoint_deploy.model.surgery import ConvReLU2d


def _time_graph(fn: Callable[[], object], warmup: int = 20, iterations: int = 100) -> float:
    """Median ms of one replay of ``fn`` captured as a CUDA graph."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return statistics.median(time_calls(graph.replay, CudaClock(), warmup=warmup, iterations=iterations)) * 1e3


def _conv_flops(module: nn.Module, x: Tensor) -> float:
    """2 x multiply-adds of every convolution in ``module`` (shapes from one traced call)."""
    total = 0.0
    hooks = []

    def count(conv: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal total
        weight = conv.conv.weight if isinstance(conv, ConvReLU2d) else conv.weight
        if isinstance(conv, nn.ConvTranspose2d):  # every input pixel meets every weight
            total += 2.0 * inputs[0].numel() / inputs[0].shape[1] * weight.numel()
        else:
            total += 2.0 * output.numel() / output.shape[1] * weight.numel()

    for sub in module.modules():
        if isinstance(sub, (nn.Conv2d, nn.ConvTranspose2d, ConvReLU2d)):  # on CUDA a ConvReLU2d skips its conv
            hooks.append(sub.register_forward_hook(count))
    with torch.inference_mode():
        module(x)
    for hook in hooks:
        hook.remove()
    return total


def _dense_rate() -> float:
    """TFLOP/s of an 8192^3 fp16 matmul (the yardstick of the 'share of the dense rate' column)."""
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    out = torch.empty_like(a)
    ms = _time_graph(lambda: torch.matmul(a, b, out=out), warmup=5, iterations=20)
    return 2 * 8192 ** 3 / (ms * 1e-3) / 1e12


def _dense_flops(config, batch: int) -> float:
    """:func:`_conv_flops` of the whole ``forward_dense`` at the config's BEV size, on the meta device."""
    model = build_model(config).to_empty(device="meta").eval()
    ny, nx = config.bev_shape
    return _conv_flops(HeadGraph(model), torch.empty(batch, config.backbone.in_channels, ny, nx, device="meta"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="j6gen2_base")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--flops", action="store_true",
                        help="only print forward_dense's GFLOP, counted on the meta device (no GPU needed)")
    args = parser.parse_args()
    config = load_config(args.config)
    if args.flops:
        print(f"{args.config}: forward_dense {_dense_flops(config, args.batch) / 1e9:.1f} GFLOP")
        return
    if args.out is None:
        parser.error("--out is required unless --flops")
    torch.manual_seed(0)
    model = build_model(config).eval()
    options = TorchOptions(precision="fp16", channels_last=True, fuse_batchnorm=True, fuse_relu=True)
    fused_options = TorchOptions(precision="fp16", channels_last=True, fuse_batchnorm=True, fuse_relu=True,
                                 fuse_heads=True, fuse_neck=True)
    plain, fused = TorchHeadBackend(model, config, "cuda", options).load(), \
        TorchHeadBackend(model, config, "cuda", fused_options).load()
    net, fused_net = plain._network, fused._network
    ny, nx = config.bev_shape
    bev = torch.randn(args.batch, config.backbone.in_channels, ny, nx, device="cuda", dtype=torch.float16)
    bev = bev.relu().contiguous(memory_format=torch.channels_last)

    rows: list[tuple[str, float, float]] = []  # name, ms, flops

    def part(name: str, module: nn.Module, x: Tensor) -> Tensor:
        with torch.inference_mode():
            y = module(x)
            ms = _time_graph(lambda: module(x))
        rows.append((name, ms, _conv_flops(module, x)))
        return y

    with torch.inference_mode():
        x = bev
        stages = []
        for index, block in enumerate(net.pts_backbone.blocks):
            x = part(f"backbone.blocks.{index}", block, x)
            stages.append(x)
        ups = [part(f"neck.deblocks.{i}", deblock, s) for i, (deblock, s) in enumerate(zip(net.pts_neck.deblocks, stages))]
        ms = _time_graph(lambda: torch.cat(ups, dim=1))
        rows.append(("neck concat", ms, 0.0))
        neck_flops = sum(f for name, _, f in rows if name.startswith("neck.deblocks"))
        ms = _time_graph(lambda: fused_net.pts_neck(stages))
        rows.append((f"neck fused ({type(fused_net.pts_neck).__name__}, concat included)", ms, neck_flops))
        neck = torch.cat(ups, dim=1)
        shared = part("head.shared_conv", net.pts_bbox_head.shared_conv, neck)
        for t, (branches, mlp) in enumerate(zip(net.pts_bbox_head.task_heads, fused_net.pts_bbox_head.task_heads)):
            part(f"head.task_heads.{t} (six branches)", branches, shared)
            ms = _time_graph(lambda: mlp(shared))
            rows.append((f"head.task_heads.{t} fused ({type(mlp).__name__})", ms, _conv_flops(branches, shared)))
    with torch.inference_mode():
        total = sum(f for name, _, f in rows if "fused" not in name)
        for label, backend in (("forward_dense", plain), ("forward_dense with fuse_heads + fuse_neck", fused)):
            ms = _time_graph(lambda: backend._forward(bev.float()))
            rows.append((f"{label} (fp32 in, fp32 maps out)", ms, total))
    rate = _dense_rate()
    lines = [f"### Network parts: {args.config}, batch {args.batch}, {torch.cuda.get_device_name(0)}, torch "
             f"{torch.__version__}", "",
             f"fp16 channels-last, BatchNorm folded, conv + ReLU fused; each part one CUDA graph, median of 100 "
             f"replays. Dense rate (8192^3 fp16 matmul): {rate:.0f} TFLOP/s.", "",
             "| part | ms | GFLOP | TFLOP/s | share of dense rate |", "|---|---|---|---|---|"]
    for name, ms, flops in rows:
        tflops = flops / (ms * 1e-3) / 1e12
        lines.append(f"| {name} | {ms:.3f} | {flops / 1e9:.1f} | {tflops:.0f} | {tflops / rate:.0%} |")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
