"""Which layer groups INT8 hurts most, and the mixed-precision graph that keeps the budget.

A *layer group* is a block of the model as its node names scope it (:func:`layer_group`):
``pts_voxel_encoder/pfn_layers.0``, ``pts_backbone/blocks.1``, ``pts_neck/deblocks.2``,
``pts_bbox_head/shared_conv``, ``pts_bbox_head/task_heads.0/heatmap``, ...

The scan quantizes one group at a time (everything else float) and measures each graph
output's SNR against the fp32 graph, ``10 log10(sum ref^2 / sum (x - ref)^2)`` over the check
frames. :func:`choose_int8` then quantizes everything, and while the worst output SNR is below
the budget, takes the most sensitive group still in INT8 out of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx

from centerpoint_deploy.backends.onnxruntime import import_onnxruntime
from centerpoint_deploy.errors import ExportError
from centerpoint_deploy.export.precision.int8 import QUANTIZED_OPS, quantize
from centerpoint_deploy.export.precision.plan import GroupSensitivity

Feeds = Sequence[dict[str, np.ndarray]]


def layer_group(node_name: str) -> str:
    """The layer group of a node: its first two scopes, three inside ``task_heads.N``.

    ``/pts_backbone/blocks.1/blocks.1.3/Conv`` -> ``pts_backbone/blocks.1``;
    ``/pts_bbox_head/task_heads.0/heatmap/heatmap.0/heatmap.0.0/Conv`` -> ``pts_bbox_head/task_heads.0/heatmap``;
    a node without scopes is its own group.
    """
    scopes = [s for s in node_name.split("/")[1:-1] if s] if node_name.startswith("/") else []
    if not scopes:
        return node_name
    depth = 3 if len(scopes) > 1 and scopes[1].startswith("task_heads") else 2
    return "/".join(scopes[:depth])


def weighted_nodes(graph: onnx.ModelProto) -> list[str]:
    """Names of the nodes INT8 quantizes (:data:`QUANTIZED_OPS`), in graph order."""
    return [n.name for n in graph.graph.node if n.op_type in QUANTIZED_OPS]


def layer_groups(graph: onnx.ModelProto) -> dict[str, list[str]]:
    """Layer group -> its weighted nodes, in graph order."""
    groups: dict[str, list[str]] = {}
    for name in weighted_nodes(graph):
        groups.setdefault(layer_group(name), []).append(name)
    return groups


def run_graph(graph: onnx.ModelProto, feeds: Feeds) -> list[dict[str, np.ndarray]]:
    """The graph's outputs ``{name: array}`` for each feed (ONNX Runtime, CPU)."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(graph.SerializeToString(), sess_options=options,
                                       providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        return [dict(zip(names, session.run(names, feed))) for feed in feeds]
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidArgument types
        raise ExportError(f"ONNX Runtime cannot run the reduced-precision graph: {exc}") from exc


def output_snr(reference: list[dict[str, np.ndarray]], test: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Per output, SNR in dB of ``test`` against ``reference`` over all frames (inf when equal)."""
    snr = {}
    for name in reference[0]:
        signal = sum(float(np.square(r[name].astype(np.float64)).sum()) for r in reference)
        noise = sum(float(np.square(t[name].astype(np.float64) - r[name]).sum()) for r, t in zip(reference, test))
        snr[name] = float("inf") if noise == 0 else (10.0 * np.log10(signal / noise) if signal > 0 else float("-inf"))
    return snr


def scan_groups(fp32_path: Path, ranges: Any, feeds: Feeds,
                reference: list[dict[str, np.ndarray]]) -> list[GroupSensitivity]:
    """Each group quantized alone; most sensitive (lowest worst-output SNR) first."""
    graph = onnx.load(str(fp32_path))
    groups = layer_groups(graph)
    everything = weighted_nodes(graph)
    results = []
    for group, nodes in groups.items():
        others = [n for n in everything if n not in nodes]
        snr = output_snr(reference, run_graph(quantize(fp32_path, ranges, exclude_nodes=others), feeds))
        results.append(GroupSensitivity(group, tuple(nodes), snr))
    return sorted(results, key=lambda s: s.worst_snr_db)


def choose_int8(fp32_path: Path, ranges: Any, feeds: Feeds, reference: list[dict[str, np.ndarray]],
                sensitivity: list[GroupSensitivity], budget_db: float,
                exclude_groups: Sequence[str] = ()) -> tuple[onnx.ModelProto, list[str], dict[str, float]]:
    """Quantize all but the most sensitive groups until every output's SNR is >= ``budget_db``.

    Args:
        sensitivity: :func:`scan_groups`'s result (most sensitive first).
        exclude_groups: groups kept out of INT8 regardless of the scan.

    Returns:
        ``(graph, excluded groups in the order taken out, final output SNR)``.
    """
    known = {s.group for s in sensitivity}
    unknown = [g for g in exclude_groups if g not in known]
    if unknown:
        raise ExportError(f"layer group(s) {unknown} do not exist; the groups are {sorted(known)}")
    excluded = list(exclude_groups)
    nodes = {s.group: s.nodes for s in sensitivity}
    while True:
        skip = [n for g in excluded for n in nodes[g]]
        graph = quantize(fp32_path, ranges, exclude_nodes=skip)
        snr = output_snr(reference, run_graph(graph, feeds))
        remaining = [s.group for s in sensitivity if s.group not in excluded]
        if min(snr.values()) >= budget_db or not remaining:
            return graph, excluded, snr
        excluded.append(remaining[0])
