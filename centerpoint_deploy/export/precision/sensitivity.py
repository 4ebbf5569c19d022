"""Which layer groups INT8 hurts most, and the mixed-precision graph that keeps the budget.

A *layer group* is a block of the model as its node names scope it (:func:`layer_group`):
``pts_voxel_encoder/pfn_layers.0``, ``pts_backbone/blocks.1``, ``pts_neck/deblocks.2``,
``pts_bbox_head/shared_conv``, ``pts_bbox_head/task_heads.0/heatmap``, ...

Every candidate graph is judged by what the detector makes of it, :func:`detection_snr` of the
fp32 model's head outputs on the check frames (:class:`DetectionProbe`): an encoder candidate
feeds the fp32 head (its pillar features scattered to the BEV map), a head candidate is the
head. The score (sigmoid of the heatmap) counts over the whole map; the box outputs count only
at the cells where the fp32 model scores at least the model's score threshold, where boxes
are decoded: a regression map's noise over empty cells, which no box reads, does not count.

The scan quantizes one group at a time (everything else float) and records the SNR of each
head output. :func:`choose_int8` then quantizes everything and, while the worst output SNR is
below the budget, takes the most sensitive group still in INT8 out of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import onnx
import torch

from centerpoint_deploy import contract
from centerpoint_deploy.backends.onnxruntime import ort_session
from centerpoint_deploy.errors import BackendError, BackendUnavailableError, ExportError
from centerpoint_deploy.export.precision.calibration import CalibrationSet
from centerpoint_deploy.export.precision.int8 import QUANTIZED_OPS, quantize
from centerpoint_deploy.export.precision.plan import GroupSensitivity
from centerpoint_deploy.preprocess import scatter_to_bev

Outputs = list[dict[str, np.ndarray]]


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


def run_graph(graph: onnx.ModelProto, feeds: Iterable[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """The graph's outputs ``{name: array}`` for each feed (ONNX Runtime, CPU)."""
    return list(iter_graph(graph, feeds))


def iter_graph(graph: onnx.ModelProto, feeds: Iterable[dict[str, np.ndarray]]) -> Iterator[dict[str, np.ndarray]]:
    """:func:`run_graph` one feed at a time: only the current frame's inputs and outputs are held."""
    try:
        session = ort_session(graph.SerializeToString(), torch.device("cpu"))
    except BackendUnavailableError:
        raise
    except BackendError as exc:  # its message says onnxruntime cannot load "the graph"
        raise ExportError(f"the reduced-precision graph: {exc}") from exc
    names = [o.name for o in session.get_outputs()]
    for feed in feeds:
        try:
            outputs = session.run(names, feed)
        except Exception as exc:
            raise ExportError(f"ONNX Runtime cannot run the reduced-precision graph: {exc}") from exc
        yield dict(zip(names, outputs))


def _snr_db(signal: float, noise: float) -> float:
    if noise == 0:
        return float("inf")
    return 10.0 * float(np.log10(signal / noise)) if signal > 0 else float("-inf")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def detection_snr(reference: Outputs, test: Outputs, score_threshold: float) -> dict[str, float]:
    """Per head output, the SNR (dB) of ``test`` against ``reference`` where detections come from.

    ``heatmap`` (``heatmap_<t>`` per task): the scores ``sigmoid(x)`` over every cell; every
    other map of the task: its values over the cells whose fp32 score (``reference``, best
    class) is at least ``score_threshold``. SNR is ``10 log10(sum ref^2 / sum (x - ref)^2)``
    over all frames; ``inf`` when nothing differs.
    """
    signal = dict.fromkeys(reference[0], 0.0)
    noise = dict.fromkeys(reference[0], 0.0)
    for ref, got in zip(reference, test):
        for name in ref:
            base = name.split("_")[0]
            heatmap = "heatmap" + name[len(base):]
            if base == "heatmap":
                r, t = _sigmoid(ref[name]), _sigmoid(got[name])
            else:
                cells = _sigmoid(ref[heatmap]).max(axis=1, keepdims=True) >= score_threshold  # [B, 1, H, W]
                r, t = ref[name] * cells, got[name] * cells
            signal[name] += float(np.square(r, dtype=np.float64).sum())
            noise[name] += float(np.square(t - r, dtype=np.float64).sum())
    return {name: _snr_db(signal[name], noise[name]) for name in signal}


def head_outputs(part: str, graph: onnx.ModelProto, check: CalibrationSet, head: onnx.ModelProto) -> Outputs:
    """The head outputs on ``check`` with ``graph`` as ``part``: a head graph is run on the head inputs;
    an encoder graph's pillar features are scattered to the BEV map and fed to ``head``."""
    if part == "head":
        return run_graph(graph, check.feeds("head"))
    return run_graph(head, scattered(iter_graph(graph, check.feeds("encoder")), check))


def scattered(pillars: Iterable[dict[str, np.ndarray]], frames: CalibrationSet) -> Iterator[dict[str, np.ndarray]]:
    """Head feeds from the encoder outputs ``pillars`` on ``frames``, each scattered to its BEV map when read."""
    for p, coords in zip(pillars, frames.pillar_coords):
        yield {contract.HEAD_INPUT: scatter_to_bev(torch.from_numpy(p[contract.ENCODER_OUTPUT]), coords, 1,
                                                   frames.bev_shape).numpy()}


@dataclass(frozen=True)
class DetectionProbe:
    """Judges a candidate graph of one part by the head outputs it gives on the check frames.

    Attributes:
        part: ``"encoder"`` or ``"head"``.
        check: the check frames.
        head: the fp32 head graph (fed an encoder candidate's scattered pillar features).
        reference: the head outputs of both fp32 graphs on ``check``.
    """

    part: str
    check: CalibrationSet
    head: onnx.ModelProto
    reference: Outputs

    @classmethod
    def build(cls, part: str, check: CalibrationSet, encoder: onnx.ModelProto, head: onnx.ModelProto) -> "DetectionProbe":
        """The probe of ``part``; its reference from the fp32 ``encoder`` and ``head`` graphs."""
        return cls(part, check, head, head_outputs(part, encoder if part == "encoder" else head, check, head))

    def snr(self, graph: onnx.ModelProto) -> dict[str, float]:
        """:func:`detection_snr` of ``graph`` as this part (the other one fp32) against fp32."""
        return detection_snr(self.reference, head_outputs(self.part, graph, self.check, self.head),
                             self.check.score_threshold)


def scan_groups(fp32_path: Path, ranges: Any, probe: DetectionProbe) -> list[GroupSensitivity]:
    """Each group quantized alone; most sensitive (lowest worst-output SNR) first."""
    graph = onnx.load(str(fp32_path))
    everything = weighted_nodes(graph)
    results = []
    for group, nodes in layer_groups(graph).items():
        others = [n for n in everything if n not in nodes]
        results.append(GroupSensitivity(group, tuple(nodes), probe.snr(quantize(fp32_path, ranges, exclude_nodes=others))))
    return sorted(results, key=lambda s: s.worst_snr_db)


def choose_int8(fp32_path: Path, ranges: Any, probe: DetectionProbe, sensitivity: list[GroupSensitivity],
                budget_db: float, exclude_groups: Sequence[str] = ()) -> tuple[onnx.ModelProto, list[str], dict[str, float]]:
    """Quantize all but the most sensitive groups until every head output's SNR is >= ``budget_db``.

    Args:
        sensitivity: :func:`scan_groups`'s result (most sensitive first).
        exclude_groups: groups of this graph kept out of INT8 regardless of the scan.

    Returns:
        ``(graph, excluded groups in the order taken out, final head output SNR)``.
    """
    excluded = list(exclude_groups)
    nodes = {s.group: s.nodes for s in sensitivity}
    while True:
        graph = quantize(fp32_path, ranges, exclude_nodes=[n for g in excluded for n in nodes[g]])
        snr = probe.snr(graph)
        remaining = [s.group for s in sensitivity if s.group not in excluded]
        if min(snr.values()) >= budget_db or not remaining:
            return graph, excluded, snr
        excluded.append(remaining[0])
