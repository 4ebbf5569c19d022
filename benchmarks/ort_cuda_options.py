"""ONNX Runtime's CUDA provider options on one exported graph pair: which of them pay, and what
the cuDNN frontend complains about (issue #16, item 4).

Times the encoder and the head of a deploy directory, each on its own session, with torch CUDA
tensors bound by pointer (IOBinding), for every combination asked: convolution algorithm search
(DEFAULT / HEURISTIC / EXHAUSTIVE), ``prefer_nhwc`` (the NHWC layout transformer: cuDNN's tensor
core kernels want channels-last), ``enable_cuda_graph`` (one replay per run) and TF32. For each it
also counts the warnings ONNX Runtime logs while building and first running the session (the
cuDNN frontend's "No execution plans support the graph" lines among them)::

    python3 benchmarks/ort_cuda_options.py --deploy-dir /tmp/dep_j6 --precision fp32 --precision fp16 \
        --out benchmarks/results/ort_options.json

Prints a Markdown table (p50 / p90 ms per graph and their sum) and writes the JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import onnx
import torch

from centerpoint_deploy.config import load_config
from centerpoint_deploy.export.manifest import load_manifest
from centerpoint_deploy.export.precision.fp16 import convert_onnx_to_fp16
from centerpoint_deploy.graph_io import onnx_graph_io

ALGOS = ("DEFAULT", "HEURISTIC", "EXHAUSTIVE")


def _inputs(path: Path, config_name: str, voxels: int) -> dict[str, torch.Tensor]:
    """Random inputs of the graph's declared shapes (dynamic voxel axis = ``voxels``)."""
    config = load_config(config_name)
    out = {}
    for spec in onnx_graph_io(onnx.load(str(path), load_external_data=False))[0]:
        if spec.name == "spatial_features":
            shape = [1, spec.shape[1], config.bev_shape[0], config.bev_shape[1]]
        else:  # input_features [voxels, points per pillar, features]
            shape = [voxels, config.voxelization.max_num_points, spec.shape[2]]
        out[spec.name] = torch.randn(shape, device="cuda", dtype=torch.float32)
    return out


def _session(ort, path: Path, algo: str, nhwc: bool, graph: bool, tf32: bool):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 1  # warnings
    cuda = {"device_id": 0, "cudnn_conv_algo_search": algo, "prefer_nhwc": int(nhwc),
            "enable_cuda_graph": int(graph), "use_tf32": int(tf32), "cudnn_conv_use_max_workspace": 1}
    return ort.InferenceSession(str(path), sess_options=options,
                                providers=[("CUDAExecutionProvider", cuda), "CPUExecutionProvider"])


def time_graph(ort, path: Path, inputs: dict[str, torch.Tensor], algo: str, nhwc: bool, graph: bool, tf32: bool,
               warmup: int, runs: int) -> dict:
    """p50 / p90 ms of one session's runs and the warnings it logged (stderr of the process, fd 2)."""
    with tempfile.TemporaryFile(mode="w+") as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            session = _session(ort, path, algo, nhwc, graph, tf32)
            binding = session.io_binding()
            for name, tensor in inputs.items():
                binding.bind_input(name, "cuda", 0, _numpy_dtype(tensor), list(tensor.shape), tensor.data_ptr())
            outputs = [o.name for o in session.get_outputs()]
            for name in outputs:
                binding.bind_output(name, "cuda", 0)
            times = []
            for i in range(warmup + runs):
                torch.cuda.synchronize()
                start = time.perf_counter()
                session.run_with_iobinding(binding)
                torch.cuda.synchronize()
                if i >= warmup:
                    times.append((time.perf_counter() - start) * 1e3)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        log = captured.read()
    lines = [line for line in log.splitlines() if " W:" in line or "[W:" in line or "warning" in line.lower()]
    plans = sum("No execution plans" in line for line in log.splitlines())
    times.sort()
    return {"p50_ms": statistics.median(times), "p90_ms": times[int(0.9 * (len(times) - 1))],
            "warnings": len(lines), "no_execution_plans": plans, "first_warning": lines[0][:200] if lines else ""}


def _numpy_dtype(tensor: torch.Tensor):
    import numpy as np

    return {torch.float32: np.float32, torch.float16: np.float16}[tensor.dtype]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deploy-dir", type=Path, required=True)
    parser.add_argument("--precision", action="append", choices=("fp32", "fp16"), default=None)
    parser.add_argument("--algo", action="append", choices=ALGOS, default=None)
    parser.add_argument("--nhwc", action="append", type=int, choices=(0, 1), default=None,
                        help="prefer_nhwc values to try (default 0 and 1)")
    parser.add_argument("--voxels", type=int, default=30000, help="pillars fed to the encoder")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--no-cuda-graph", action="store_true")
    parser.add_argument("--tf32", action="store_true", help="fp32 rows with TF32 allowed too")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import onnxruntime as ort

    manifest = load_manifest(args.deploy_dir)
    config_name = manifest.model_config().name
    rows = []
    print("| precision | algo search | prefer_nhwc | cuda graph | tf32 | encoder p50 / p90 ms | head p50 / p90 ms "
          "| sum of p50 |\n|---|---|---|---|---|---|---|---|", flush=True)
    for precision in args.precision or ["fp32", "fp16"]:
        paths = {part: manifest.onnx_path(part) for part in ("encoder", "head")}
        if precision == "fp16":
            work = Path(tempfile.mkdtemp())
            paths = {part: convert_onnx_to_fp16(p, work / p.name.replace(".onnx", ".fp16.onnx")) for part, p in paths.items()}
        inputs = {part: _inputs(p, config_name, args.voxels) for part, p in paths.items()}
        grid = itertools.product(args.algo or ALGOS, [bool(v) for v in args.nhwc or (0, 1)], (False,) if args.no_cuda_graph else (False, True),
                                 (False, True) if precision == "fp32" and args.tf32 else (False,))
        for algo, nhwc, graph, tf32 in grid:
            row = {"precision": precision, "algo": algo, "prefer_nhwc": nhwc, "cuda_graph": graph, "tf32": tf32}
            for part, path in paths.items():
                try:
                    row[part] = time_graph(ort, path, inputs[part], algo, nhwc, graph, tf32, args.warmup, args.runs)
                except Exception as exc:  # a combination ORT refuses is a result too
                    row[part] = {"error": str(exc).splitlines()[0][:200]}
            rows.append(row)
            print(_line(row), flush=True)
    args.out.write_text(json.dumps({"deploy_dir": str(args.deploy_dir), "config": config_name, "voxels": args.voxels,
                                    "onnxruntime": ort.__version__, "rows": rows}, indent=1))


def _line(row: dict) -> str:
    def cell(part: str) -> str:
        r = row[part]
        return f"error: {r['error']}" if "error" in r else f"{r['p50_ms']:.2f} / {r['p90_ms']:.2f} ({r['no_execution_plans']} np, {r['warnings']} w)"

    total = sum(row[p].get("p50_ms", float("nan")) for p in ("encoder", "head"))
    return (f"| {row['precision']} | {row['algo']} | {int(row['prefer_nhwc'])} | {int(row['cuda_graph'])} | "
            f"{int(row['tf32'])} | {cell('encoder')} | {cell('head')} | {total:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
