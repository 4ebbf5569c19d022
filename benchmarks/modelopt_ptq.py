"""NVIDIA ModelOpt's ONNX PTQ (INT8) on a CenterPoint export, written as a deploy directory ours reads.

Compares ModelOpt (``modelopt.onnx.quantization.quantize``) with this project's
``onnxruntime.quantization`` INT8 (``export --precision int8``) on the same calibration frames and the
same plan (docs/precision.md, "onnxruntime.quantization or ModelOpt: measured"). ModelOpt is not a
dependency of the project: install it into a private folder, without its ``[onnx]`` extra's pins
(onnx~=1.21, onnxruntime-gpu~=1.24.2, cupy), beside this machine's onnx / onnxruntime / torch::

    pip install --no-deps --target /tmp/modelopt_site nvidia-modelopt==0.47.0 onnx-graphsurgeon \
        nvidia-ml-py onnxslim onnxscript onnx-ir lief
    export PYTHONPATH=$PWD:/tmp/modelopt_site

    # INT8 bundle: ModelOpt max calibration on 64 frames, two layer groups kept float
    python3 benchmarks/modelopt_ptq.py quantize --fp32-dir /tmp/mo_fp32 -c demo \
        --checkpoint centerpoint_deploy/assets/demo_centerpoint.pth --dataset /tmp/mo_calib64 \
        --calib-frames 64 --method max --keep-float pts_voxel_encoder/pfn_layers.0 \
        --keep-float pts_backbone/blocks.0 --out /tmp/mo_max88
    # Q/DQ structure of any INT8 deploy directories (ours or ModelOpt's), as JSON
    python3 benchmarks/modelopt_ptq.py inspect /tmp/mo_ort88 /tmp/mo_max88
    # the INT8 layers of two of them and the largest relative difference of their Q/DQ scales
    python3 benchmarks/modelopt_ptq.py compare /tmp/mo_ort88 /tmp/mo_max88

``quantize`` reads the fp32 deploy directory's export settings (opset, ``rot_y_axis_reference``,
simplification, bundle layout, node parameters) and checks that ``--checkpoint`` and ``-c`` are what
it was exported from. Like ``export --precision int8`` it folds BatchNorm into the layers first and
exports those fp32 graphs again (the fp32 bundle keeps its norms, so its weights are not the ones that
run); it picks the frames as the exporter does (``pick_frames``) and builds the calibration inputs with
``collect_calibration``. Each graph then goes through ModelOpt with its INT8 mode, per-channel weights
(ModelOpt's only INT8 weight mode), calibration on ONNX Runtime's CPU provider, the Q/DQ of
``Conv``/``ConvTranspose``/``MatMul``/``Gemm`` (``op_types_to_quantize``), the ``--keep-float`` groups'
layers in ``nodes_to_exclude`` and the layers it does not quantize in fp32 (``high_precision_dtype
fp32``; ModelOpt's default fp16 would also halve the rest). The plan (``method`` ``modelopt-<method>``,
the layers ModelOpt did quantize, the detection SNR of each graph on the first 8 frames) and the bundle
are written with the package's ``write_plan`` and ``publish_bundle``, which run ``load_manifest``'s
checks. ModelOpt patches ``onnxruntime.quantization`` in the running process (its calibrators and
registries): run this script alone, not beside an ``export --precision int8`` in the same process.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from centerpoint_deploy import contract
from centerpoint_deploy.export.precision.int8 import QUANTIZED_OPS, quantized_layers
from centerpoint_deploy.export.precision.sensitivity import layer_groups, weighted_nodes

PARTS = {"encoder": contract.ENCODER_FILE, "head": contract.HEAD_FILE}
#: ModelOpt's INT8 calibration methods (``modelopt.onnx.quantization.int8``).
METHODS = ("max", "entropy")
#: Frames the plan's detection SNR is measured on (the exporter's ``Int8Options.check_frames``).
CHECK_FRAMES = 8


class FeedReader:
    """The calibration reader ModelOpt takes (``get_next``, plus its ``get_first`` and ``rewind``), one frame per step.

    The encoder's voxel count differs per frame, so the inputs cannot be stacked into the single
    array ModelOpt's own ``calibration_data`` splits along axis 0.
    """

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]) -> None:
        if not feeds:
            raise ValueError("no calibration feeds")
        self._feeds = list(feeds)
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._feeds):
            return None
        self._next += 1
        return self._feeds[self._next - 1]

    def get_first(self) -> dict[str, np.ndarray]:
        return self._feeds[0]

    def rewind(self) -> None:
        self._next = 0


def kept_float_nodes(graphs: dict[str, onnx.ModelProto], groups: Sequence[str]) -> dict[str, list[str]]:
    """Per part, the weighted nodes of the layer groups ``groups`` (``sensitivity.layer_group`` names).

    Raises:
        ValueError: a group that is in neither graph.
    """
    found = {part: layer_groups(graph) for part, graph in graphs.items()}
    unknown = [g for g in groups if not any(g in part_groups for part_groups in found.values())]
    if unknown:
        known = sorted(g for part_groups in found.values() for g in part_groups)
        raise ValueError(f"layer group(s) {unknown} do not exist; the groups are {known}")
    return {part: [n for g in groups if g in part_groups for n in part_groups[g]] for part, part_groups in found.items()}


def exclusion_patterns(nodes: Sequence[str]) -> list[str]:
    """ModelOpt's ``nodes_to_exclude`` (``re.match`` patterns) matching exactly ``nodes``."""
    return [re.escape(name) + "$" for name in nodes]


def qdq_summary(graph: onnx.ModelProto) -> dict[str, Any]:
    """The Q/DQ structure of ``graph``: node counts, what is quantized and how.

    Returns a JSON-able mapping: ``opset``; ``quantize_linear`` / ``dequantize_linear`` node counts;
    ``int8_layers`` (:func:`~centerpoint_deploy.export.precision.int8.quantized_layers`) by op type;
    ``q_consumers``: op types reading a ``DequantizeLinear`` output that is an activation (fed by a
    ``QuantizeLinear``); ``weight_dq``: ``per_channel`` (a 1-D scale, one per output channel) / ``per_tensor``
    (a scalar scale) counts and the ``axes`` of the per-channel ones, and whether the weight is stored as INT8 (``int8_initializer``) or float behind
    a Q/DQ pair (``float_qdq_pair``); ``zero_points``: their dtypes and whether all are 0 (symmetric);
    ``activation_scales``: count of per-tensor activation scales; ``layer_outputs_quantized``: weighted
    nodes whose output feeds a ``QuantizeLinear``.
    """
    inits = {i.name: i for i in graph.graph.initializer}
    producer = {out: node for node in graph.graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    q_nodes = [n for n in graph.graph.node if n.op_type == "QuantizeLinear"]
    dq_nodes = [n for n in graph.graph.node if n.op_type == "DequantizeLinear"]
    int8 = set(quantized_layers(graph))
    weight: Counter[str] = Counter()
    axes: Counter[int] = Counter()
    activation_scales, zero_dtypes, all_zero, act_consumers = 0, set(), True, Counter()
    for dq in dq_nodes:
        if len(dq.input) > 2 and dq.input[2] in inits:
            zero = numpy_helper.to_array(inits[dq.input[2]])
            zero_dtypes.add(str(zero.dtype))
            all_zero = all_zero and not np.any(zero)
        scale = numpy_helper.to_array(inits[dq.input[1]]) if dq.input[1] in inits else None
        source = producer.get(dq.input[0])
        is_weight = dq.input[0] in inits or (source is not None and source.op_type == "QuantizeLinear"
                                             and source.input[0] in inits)
        if is_weight:
            weight["int8_initializer" if dq.input[0] in inits else "float_qdq_pair"] += 1
            if scale is not None and scale.ndim == 1:
                weight["per_channel"] += 1
                axes[next((a.i for a in dq.attribute if a.name == "axis"), 1)] += 1
            else:
                weight["per_tensor"] += 1
        else:
            activation_scales += 1
            for consumer in consumers.get(dq.output[0], []):
                act_consumers[consumer.op_type] += 1
    weighted = [n for n in graph.graph.node if n.op_type in QUANTIZED_OPS]
    outputs_quantized = [n.name for n in weighted
                         if any(c.op_type == "QuantizeLinear" for c in consumers.get(n.output[0], []))]
    return {
        "opset": next((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), None),
        "quantize_linear": len(q_nodes),
        "dequantize_linear": len(dq_nodes),
        "int8_layers": dict(Counter(n.op_type for n in weighted if n.name in int8)),
        "float_layers": dict(Counter(n.op_type for n in weighted if n.name not in int8)),
        "q_consumers": dict(act_consumers),
        "weight_dq": {**dict(weight), "axes": {str(k): v for k, v in axes.items()}},
        "zero_points": {"dtypes": sorted(zero_dtypes), "all_zero": all_zero},
        "activation_scales": activation_scales,
        "layer_outputs_quantized": outputs_quantized,
    }


def layer_scales(graph: onnx.ModelProto) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """INT8 layer -> (activation scale, weight scales) as the graph's ``DequantizeLinear`` nodes hold them."""
    inits = {i.name: i for i in graph.graph.initializer}
    producer = {out: node for node in graph.graph.node for out in node.output}
    layers = set(quantized_layers(graph))
    return {node.name: tuple(numpy_helper.to_array(inits[producer[name].input[1]]).astype(np.float64)
                             for name in node.input[:2])
            for node in graph.graph.node if node.name in layers}


def compare_scales(a: onnx.ModelProto, b: onnx.ModelProto) -> dict[str, Any]:
    """The INT8 layers of ``a`` and ``b`` and the largest relative difference of their scales."""
    scales_a, scales_b = layer_scales(a), layer_scales(b)
    both = [name for name in scales_a if name in scales_b]

    def worst(index: int) -> float:
        return max((float(np.max(np.abs(scales_a[n][index] / scales_b[n][index] - 1.0))) for n in both), default=0.0)

    return {"layers_in_both": len(both), "only_in_first": sorted(set(scales_a) - set(scales_b)),
            "only_in_second": sorted(set(scales_b) - set(scales_a)),
            "activation_scale_max_rel_diff": worst(0), "weight_scale_max_rel_diff": worst(1)}


def modelopt_quantize(fp32: onnx.ModelProto, feeds: Sequence[dict[str, np.ndarray]], method: str,
                      exclude_nodes: Sequence[str], work_dir: Path) -> tuple[onnx.ModelProto, float]:
    """ModelOpt's INT8 PTQ of ``fp32`` calibrated on ``feeds``; returns the graph and its wall time (s)."""
    from modelopt.onnx.quantization import quantize

    source, target = work_dir / "fp32.onnx", work_dir / "int8.onnx"
    onnx.save(fp32, str(source))
    start = time.perf_counter()
    quantize(str(source), quantize_mode="int8", calibration_data_reader=FeedReader(feeds),
             calibration_method=method, calibration_eps=["cpu"], op_types_to_quantize=list(QUANTIZED_OPS),
             nodes_to_exclude=exclusion_patterns(exclude_nodes), high_precision_dtype="fp32",
             output_path=str(target), log_level="WARNING")
    seconds = time.perf_counter() - start
    graph = onnx.load(str(target))
    # ModelOpt rebuilds the graph with onnx-graphsurgeon, which drops metadata_props: put back the
    # model facts load_manifest checks.
    present = {prop.key for prop in graph.metadata_props}
    graph.metadata_props.extend(prop for prop in fp32.metadata_props if prop.key not in present)
    return graph, seconds


def quantize_bundle(args: argparse.Namespace) -> dict[str, Any]:
    """The ``quantize`` command: write the INT8 deploy directory ``args.out``; returns its report."""
    import torch

    from centerpoint_deploy.config import load_config
    from centerpoint_deploy.data import open_dataset
    from centerpoint_deploy.export.bundle import bundle_node_params, node_precision, publish_bundle, staged_bundle
    from centerpoint_deploy.export.manifest import config_mismatches, load_manifest, sha256_file
    from centerpoint_deploy.export.onnx_export import export_onnx
    from centerpoint_deploy.export.precision.calibration import (check_classes, check_frame_count,
                                                                   collect_calibration, pick_frames)
    from centerpoint_deploy.export.precision.plan import PLAN_FILE, PartPlan, PrecisionPlan, write_plan
    from centerpoint_deploy.export.precision.sensitivity import DetectionProbe
    from centerpoint_deploy.model import build_model
    from centerpoint_deploy.model.surgery import fold_batchnorm

    fp32_manifest = load_manifest(args.fp32_dir)
    config = load_config(args.config)
    if fp32_manifest.precision != "fp32":
        sys.exit(f"{args.fp32_dir} is a {fp32_manifest.precision} export; give an fp32 one")
    if config_mismatches(fp32_manifest, config):
        sys.exit(f"-c {args.config} is not the config {args.fp32_dir} was exported from: "
                 f"{config_mismatches(fp32_manifest, config)}")
    if sha256_file(args.checkpoint) != fp32_manifest.checkpoint_sha256:
        sys.exit(f"{args.checkpoint} is not the checkpoint {args.fp32_dir} was exported from")

    torch.set_num_threads(args.threads)
    model = build_model(config, checkpoint=args.checkpoint).eval()
    frames = open_dataset(args.dataset, class_names=config.class_names, sweeps_num=config.points.sweeps_num,
                          load_dim=config.points.load_dim)
    check_frame_count(args.calib_frames, len(frames))
    chosen = [frames[i] for i in pick_frames(len(frames), args.calib_frames)]
    check_classes(chosen, config.class_names)
    start = time.perf_counter()
    calibration = collect_calibration(model, config, chosen)
    collect_seconds = time.perf_counter() - start

    report: dict[str, Any] = {"method": args.method, "calibration_frames": len(calibration),
                              "collect_calibration_s": round(collect_seconds, 2), "parts": {}}
    with tempfile.TemporaryDirectory(prefix="modelopt-ptq.") as tmp:
        folded_dir = Path(tmp) / "fp32-folded"
        export_onnx(fold_batchnorm(copy.deepcopy(model)), config, folded_dir, opset=fp32_manifest.opset,
                    rot_y_axis_reference=fp32_manifest.rot_y_axis_reference, simplify=fp32_manifest.simplified,
                    checkpoint=args.checkpoint, autoware_format=fp32_manifest.bundle_version)
        fp32 = {part: onnx.load(str(folded_dir / name)) for part, name in PARTS.items()}
        kept = kept_float_nodes(fp32, args.keep_float)
        check = calibration.first(CHECK_FRAMES)
        with staged_bundle(args.out) as stage:
            parts, opsets = [], set()
            for part, name in PARTS.items():
                work = Path(tmp) / part
                work.mkdir()
                graph, seconds = modelopt_quantize(fp32[part], calibration.feeds(part), args.method, kept[part], work)
                nodes = weighted_nodes(fp32[part])
                int8 = set(quantized_layers(graph))
                snr = DetectionProbe.build(part, check, fp32["encoder"], fp32["head"]).snr(graph)
                summary = qdq_summary(graph)
                onnx.save(graph, str(stage / name))
                opsets.add(summary["opset"])
                parts.append(PartPlan(part, quantized_nodes=tuple(n for n in nodes if n in int8),
                                      float_nodes=tuple(n for n in nodes if n not in int8),
                                      excluded_groups=tuple(g for g in args.keep_float if g in layer_groups(fp32[part])),
                                      snr_db=snr))
                report["parts"][part] = {
                    "modelopt_quantize_s": round(seconds, 2), "snr_db": snr,
                    "int8_layers": len(int8), "weighted_layers": len(nodes),
                    "not_quantized_against_plan": sorted(set(nodes) - set(kept[part]) - int8),
                    "qdq": summary}
            if len(opsets) != 1:
                sys.exit(f"ModelOpt wrote graphs of different opsets {sorted(opsets)}")
            plan = PrecisionPlan("int8", method=f"modelopt-{args.method}", calibration_frames=calibration.frame_tokens,
                                 calibration_sha256=calibration.frame_sha256, parts=tuple(parts))
            write_plan(plan, stage)
            manifest = publish_bundle(stage, args.out, config, autoware_format=fp32_manifest.bundle_version,
                                      precision="int8", trt_precision=node_precision("int8"), opset=opsets.pop(),
                                      rot_y_axis_reference=fp32_manifest.rot_y_axis_reference,
                                      simplified=fp32_manifest.simplified,
                                      checkpoint_sha256=fp32_manifest.checkpoint_sha256,
                                      params=bundle_node_params(fp32_manifest), extra_files=[PLAN_FILE])
    report["deploy_dir"] = str(manifest.deploy_dir)
    return report


def inspect_bundles(dirs: Sequence[Path]) -> dict[str, Any]:
    """The ``inspect`` command: :func:`qdq_summary` of both graphs of each deploy directory."""
    return {str(d): {part: qdq_summary(onnx.load(str(d / name))) for part, name in PARTS.items()} for d in dirs}


def compare_bundles(first: Path, second: Path) -> dict[str, Any]:
    """The ``compare`` command: :func:`compare_scales` of both graphs of two deploy directories."""
    return {part: compare_scales(onnx.load(str(first / name)), onnx.load(str(second / name)))
            for part, name in PARTS.items()}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    q = commands.add_parser("quantize", help="ModelOpt INT8 PTQ of both graphs into a deploy directory")
    q.add_argument("--fp32-dir", type=Path, required=True, help="fp32 deploy directory written by 'export'")
    q.add_argument("-c", "--config", required=True, help="model config it was exported from (e.g. demo)")
    q.add_argument("--checkpoint", type=Path, required=True, help="checkpoint it was exported from")
    q.add_argument("--dataset", required=True, help="calibration dataset (T4 folder, split file or info .pkl)")
    q.add_argument("--calib-frames", type=int, required=True, help="frames, spread over the dataset as 'export' does")
    q.add_argument("--method", choices=METHODS, required=True, help="ModelOpt calibration method")
    q.add_argument("--keep-float", action="append", default=[], metavar="GROUP",
                   help="layer group kept float (repeatable), e.g. pts_backbone/blocks.0")
    q.add_argument("--out", type=Path, required=True, help="INT8 deploy directory to write")
    q.add_argument("--report", type=Path, help="also write the report (timings, SNR, Q/DQ structure) as JSON here")
    q.add_argument("--threads", type=int, default=2, help="torch threads for the calibration inputs")
    i = commands.add_parser("inspect", help="Q/DQ structure of INT8 deploy directories, as JSON")
    i.add_argument("dirs", type=Path, nargs="+")
    c = commands.add_parser("compare", help="INT8 layers and Q/DQ scales of two deploy directories, as JSON")
    c.add_argument("first", type=Path)
    c.add_argument("second", type=Path)
    args = parser.parse_args(argv)
    if args.command == "inspect":
        print(json.dumps(inspect_bundles(args.dirs), indent=2))
        return
    if args.command == "compare":
        print(json.dumps(compare_bundles(args.first, args.second), indent=2))
        return
    report = quantize_bundle(args)
    text = json.dumps(report, indent=2)
    if args.report is not None:
        args.report.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
