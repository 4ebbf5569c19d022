"""What torch.compile makes of the dense network: the launch sequence of its generated code::

    PYTHONPATH=$PWD python3 benchmarks/network_code.py --config j6gen2_base --out code.txt

Compiles ``forward_dense`` as the benchmark's fastest variant does (fp16, channels-last,
BatchNorm folded, ``fuse_heads``, ``fuse_neck``, ``max-autotune-no-cudagraphs``; random
weights) and writes the generated wrapper's ``call`` function: every kernel launch and extern
call (cuDNN convolutions, cuBLAS matmuls, user Triton kernels) in order, with the buffers they
read and write, so that an epilogue left unfused (a pointwise kernel after an extern
convolution) can be traced to its layer. Prints a count of the launches by kind.
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

import torch
from torch._inductor.utils import run_and_get_code

from centerpoint_deploy.backends.pytorch import TorchHeadBackend, TorchOptions
from centerpoint_deploy.config import load_config
from centerpoint_deploy.model import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="j6gen2_base")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    config = load_config(args.config)
    options = TorchOptions(precision="fp16", channels_last=True, fuse_batchnorm=True, fuse_heads=True,
                           fuse_neck=True, compile=True, max_autotune=True)
    backend = TorchHeadBackend(build_model(config).eval(), config, device="cuda", options=options)
    backend.load()
    height, width = config.bev_shape
    bev = torch.randn(1, config.backbone.in_channels, height, width, device="cuda").relu()
    with torch.inference_mode():
        _, sources = run_and_get_code(backend.forward_in_capture, backend._cast_input(bev))
    wrapper = max(sources, key=len)
    body = wrapper[wrapper.index("def call("):]
    launches = [line.strip() for line in body.splitlines()
                if re.search(r"extern_kernels\.|\.run\(|_kernel\[|triton_kernel_wrapper|aten\.", line)]
    args.out.write_text("\n".join(launches) + "\n\n" + body)
    kinds = collections.Counter(re.match(r"[\w.]+", line.split("=")[-1].strip()).group(0).split("(")[0]
                                for line in launches if re.match(r"[\w.]+", line.split("=")[-1].strip()))
    for kind, count in kinds.most_common():
        print(f"{count:4d}  {kind}")


if __name__ == "__main__":
    main()
