"""The neck's patch matmuls on CUDA: the Triton kernel (tile shapes) against a matmul and a copy::

    PYTHONPATH=$PWD python3 benchmarks/neck_kernel.py --config j6gen2_base

For each ``kernel == stride`` branch of the preset's neck (random weights, fp16, the input at
the backbone stage's size), times ``relu(x @ W + b)`` written into its channels of the
``[1, H, W, sum(out_channels)]`` map: as cuBLAS ``addmm`` and a ``clamp_min`` into the strided
patches (the neck's CPU path), and as the Triton kernel with each of a few tile shapes (the
first is the one the neck uses). Prints a Markdown table (median of CUDA-event timings) and the
largest difference of each kernel's map from the matmul's.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from torch import nn

from centerpoint_deploy.benchmark.timing import CudaClock, time_calls
from centerpoint_deploy.config import load_config
from centerpoint_deploy.model.fused_neck import _PatchMatmul, _triton_launcher

#: (block_m, block_n, block_k, num_warps, num_stages); the first is the launcher's default.
TILES = [(128, 128, 64, 8, 3), (128, 64, 64, 4, 3), (64, 128, 64, 4, 3), (128, 256, 64, 8, 3),
         (256, 128, 64, 8, 3), (128, 128, 32, 4, 4)]


def _median_ms(run, repeats: int = 50) -> float:
    """Median GPU ms of ``run()`` after 5 untimed calls."""
    return statistics.median(time_calls(run, CudaClock(), warmup=5, iterations=repeats)) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="j6gen2_base")
    args = parser.parse_args()
    cfg = load_config(args.config)
    launch = _triton_launcher()
    total = sum(cfg.neck.out_channels)
    print(f"### Neck patch matmuls: {args.config}, fp16, {torch.cuda.get_device_name()}\n")
    print("| branch | input | matmul + copy ms | " + " | ".join(f"tile {t}" for t in TILES) + " | largest difference |")
    print("|---|---|---|" + "---|" * len(TILES) + "---|")
    stride, size = 1, cfg.bev_shape  # (H, W) of the scattered map
    start = 0
    torch.manual_seed(0)
    for index, (c_in, c_out, up) in enumerate(zip(cfg.neck.in_channels, cfg.neck.out_channels,
                                                  cfg.neck.upsample_strides)):
        stride = stride * cfg.backbone.layer_strides[index]
        height, width = size[0] // stride, size[1] // stride
        if up < 1 or (up == 1 and not cfg.neck.use_conv_for_no_stride):
            start += c_out
            continue
        k = int(up)
        layer = nn.ConvTranspose2d(c_in, c_out, k, k) if k > 1 else nn.Conv2d(c_in, c_out, 1)
        matmul = _PatchMatmul(layer).cuda().half()
        x = torch.randn(1, c_in, height, width, device="cuda").relu().half()
        x = x.contiguous(memory_format=torch.channels_last)
        out = torch.empty(1, height * k, width * k, total, device="cuda", dtype=torch.float16)
        pixels = x.permute(0, 2, 3, 1).reshape(-1, c_in)
        matmul._launch = None  # the torch path: addmm, then clamp_min into the strided patches
        reference = _median_ms(lambda: matmul.write(x, out, start))
        want = out[..., start: start + c_out].float().clone()
        cells, worst = [], 0.0
        for tile in TILES:
            bm, bn, bk, warps, stages = tile
            out.fill_(float("nan"))
            cells.append(_median_ms(lambda: launch(pixels, height, width, matmul.weight, matmul.bias, k, out, start,
                                                   block_m=bm, block_n=bn, block_k=bk, num_warps=warps,
                                                   num_stages=stages)))
            worst = max(worst, float((out[..., start: start + c_out].float() - want).abs().max()))
        print(f"| {index} (k={k}, {c_in} -> {c_out}) | {height} x {width} | {reference:.3f} | "
              + " | ".join(f"{c:.3f}" for c in cells) + f" | {worst:.2e} |")
        start += c_out


if __name__ == "__main__":
    main()
