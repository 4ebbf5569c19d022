"""fp16 graphs with float32 inputs and outputs, overflowing layers kept in fp32.

The conversion is ``onnxconverter_common.float16.convert_float_to_float16`` with
``keep_io_types=True``: weights and activations become float16 and Cast nodes at the graph
boundary keep the I/O float32, so the node's bindings (contract §2) do not change. Nodes
listed in ``keep_fp32`` stay float32, with Casts around them.

Which nodes: those whose output, measured on the calibration inputs with ONNX Runtime
(:func:`~.activations.activation_peaks`), exceeds :data:`FP16_SAFE_MAX`, a quarter of fp16's
largest finite value (65504) so that frames a little hotter than the calibration frames do
not overflow either.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx

from centerpoint_deploy.errors import BackendUnavailableError, ExportError
from centerpoint_deploy.export.precision.activations import activation_peaks, float_activations

#: fp16's largest finite value.
FP16_MAX = 65504.0
#: Activations above this (measured) keep their node in fp32.
FP16_SAFE_MAX = FP16_MAX / 4


@dataclass(frozen=True)
class Fp16Conversion:
    """An fp16 graph and the nodes it keeps in fp32.

    Attributes:
        graph: the converted model (float32 I/O).
        kept_fp32: names of the nodes left in float32, in graph order.
        peaks: node name -> measured ``max |output|`` of the nodes kept (the reason).
    """

    graph: onnx.ModelProto
    kept_fp32: tuple[str, ...]
    peaks: dict[str, float]


def overflowing_nodes(graph: onnx.ModelProto, feeds: Sequence[dict[str, np.ndarray]],
                      limit: float = FP16_SAFE_MAX) -> dict[str, float]:
    """Nodes whose output magnitude on ``feeds`` exceeds ``limit``: node name -> ``max |output|``."""
    producers = float_activations(graph)
    nodes: dict[str, float] = {}
    for tensor, peak in activation_peaks(graph, feeds).items():
        if not peak <= limit:  # NaN counts as overflowing
            node = producers[tensor]
            nodes[node] = max(nodes.get(node, 0.0), peak)
    return nodes


def convert_to_fp16(graph: onnx.ModelProto, keep_fp32: Sequence[str] = ()) -> onnx.ModelProto:
    """``graph`` in fp16 with float32 I/O, the nodes named in ``keep_fp32`` left in float32.

    Raises:
        BackendUnavailableError: onnxconverter-common is not installed.
        ExportError: the converter fails.
    """
    try:
        from onnxconverter_common.float16 import convert_float_to_float16
    except ImportError as exc:
        raise BackendUnavailableError("fp16 export needs onnxconverter-common: pip install onnxconverter-common") from exc
    try:
        # max_finite_val: weights up to fp16's range are kept as they are (the default clips at 1e4).
        return convert_float_to_float16(graph, keep_io_types=True, max_finite_val=FP16_MAX,
                                        node_block_list=list(keep_fp32) or None)
    except Exception as exc:  # the converter raises ValueError / onnx errors
        raise ExportError(f"fp16 conversion failed: {exc}") from exc


def to_fp16(graph: onnx.ModelProto, feeds: Sequence[dict[str, np.ndarray]]) -> Fp16Conversion:
    """Measure overflow on ``feeds`` (calibration inputs), then convert, keeping those nodes fp32."""
    peaks = overflowing_nodes(graph, feeds)
    order = [n.name for n in graph.graph.node if n.name in peaks]
    return Fp16Conversion(convert_to_fp16(graph, order), tuple(order), {n: peaks[n] for n in order})


def convert_onnx_to_fp16(source: Path | str, target: Path | str) -> Path:
    """Write an fp16 version of the ONNX file ``source`` to ``target`` (no calibration data: nothing kept fp32).

    Used for deploy directories exported in fp32; an ``export --precision fp16`` graph is
    already converted (with its overflow check) and is used as it is.

    Raises:
        ExportError: ``source`` is missing or not an ONNX model.
    """
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise ExportError(f"ONNX file {source} does not exist")
    try:
        model = onnx.load(str(source))
    except Exception as exc:  # onnx raises DecodeError / ValueError / OSError
        raise ExportError(f"{source} is not a readable ONNX model: {exc}") from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(convert_to_fp16(model), str(target))
    return target
