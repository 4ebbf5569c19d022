"""Largest magnitude of every float activation of an ONNX graph over a set of feeds.

The graph is run once per feed by ONNX Runtime (CPU) with every float node output added as a
graph output; the per-tensor maximum of ``|x|`` is kept as the feeds go by, so memory stays at
one feed's activations.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import onnx

from centerpoint_deploy.backends.onnxruntime import import_onnxruntime
from centerpoint_deploy.errors import ExportError

_FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)


def _tensor_types(graph: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(graph)
    return {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.output]}


def float_activations(graph: onnx.ModelProto) -> dict[str, str]:
    """Float tensors produced by nodes: tensor name -> name of the producing node (graph order)."""
    types = _tensor_types(graph)
    return {out: node.name for node in graph.graph.node if node.op_type != "Constant"
            for out in node.output if types.get(out) in _FLOAT_TYPES}


def activation_peaks(graph: onnx.ModelProto, feeds: Sequence[dict[str, np.ndarray]]) -> dict[str, float]:
    """``max |x|`` of each float node output (:func:`float_activations`) over ``feeds``.

    Raises:
        ExportError: no feeds, or ONNX Runtime cannot run the graph on them.
    """
    if not feeds:
        raise ExportError("measuring activations needs at least one calibration input")
    ort = import_onnxruntime()
    tensors, types = float_activations(graph), _tensor_types(graph)
    probed = onnx.ModelProto()
    probed.CopyFrom(graph)
    known = {o.name for o in probed.graph.output}
    for name in tensors:
        if name not in known:
            probed.graph.output.append(onnx.helper.make_tensor_value_info(name, types[name], None))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # every tensor as written
    try:
        session = ort.InferenceSession(probed.SerializeToString(), sess_options=options,
                                       providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        peaks = dict.fromkeys(tensors, 0.0)
        for feed in feeds:
            for name, value in zip(names, session.run(names, feed)):
                if name in peaks and value.size:
                    peaks[name] = max(peaks[name], float(np.abs(value.astype(np.float32)).max()))
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidArgument types
        raise ExportError(f"ONNX Runtime cannot run the graph on the calibration inputs: {exc}") from exc
    return peaks
