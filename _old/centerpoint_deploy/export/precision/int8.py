"""INT8 graphs with explicit QuantizeLinear/DequantizeLinear, from calibration data.

Written with ``onnxruntime.quantization`` (QDQ format), laid out for TensorRT's explicit
quantization:

- only the weighted layers (``Conv``, ``ConvTranspose``, ``MatMul``, ``Gemm``) are quantized,
  each on its *inputs*: the activation it reads (per tensor) and its weight (per output
  channel); their outputs and the bias stay float (``OpTypesToExcludeOutputQuantization``,
  ``QuantizeBias=False``), so TensorRT fuses ``DQ -> Conv -> ReLU`` and the next ``Q``;
- symmetric signed INT8 everywhere (zero points 0), the only kind TensorRT accepts;
- BatchNorm is folded into the preceding layer before export (by ``export_onnx``), so the
  weight scales are those of the weights that run;
- the Q/DQ nodes, which ONNX Runtime names after the tensor they quantize, lose the leading
  ``/`` so they belong to no module scope: a module's output in the graph stays its float
  output, which bisection compares with PyTorch's.

Calibration methods (activation ranges; weights always use their own max per channel):
``max`` (alias ``minmax``) the largest ``|x|`` seen; ``percentile`` the 99.999th percentile
of ``|x|``; ``entropy`` the KL-divergence threshold (TensorRT's legacy calibrator);
``mse`` the clipping threshold that minimises the mean squared quantization error over the
``|x|`` histogram (:func:`mse_thresholds`). ONNX Runtime collects the data (its
``MinMaxCalibrater`` / ``HistogramCalibrater``) frame by frame (voxel counts differ).
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx

from centerpoint_deploy.errors import BackendUnavailableError, ExportError

#: ``--calib-method`` values (``minmax`` is ``max``).
CALIBRATION_METHODS = ("max", "minmax", "percentile", "entropy", "mse")
#: Operators that get Q/DQ on their inputs.
QUANTIZED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
#: Percentile of ``|x|`` the ``percentile`` method clips at.
PERCENTILE = 99.999


def _quantization() -> Any:
    try:
        from onnxruntime import quantization
    except ImportError as exc:
        raise BackendUnavailableError("int8 export needs onnxruntime (onnxruntime.quantization)") from exc
    return quantization


def check_method(method: str) -> str:
    """The canonical method name (``minmax`` -> ``max``), or :class:`ExportError`."""
    if method not in CALIBRATION_METHODS:
        raise ExportError(f"calibration method '{method}' is not one of {', '.join(CALIBRATION_METHODS)}")
    return "max" if method == "minmax" else method


class _FeedReader:
    """``onnxruntime.quantization.CalibrationDataReader`` over a list of feeds."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]) -> None:
        self._feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def mse_thresholds(histograms: dict[str, tuple[np.ndarray, np.ndarray]], levels: int = 127) -> dict[str, float]:
    """Per tensor, the clip threshold ``t`` (a histogram edge) minimising the quantization MSE.

    Args:
        histograms: tensor -> ``(counts [K], edges [K + 1])`` of ``|x|``.
        levels: positive INT8 levels (symmetric quantization, step ``t / levels``).

    Each bin is represented by its centre ``c``: inside the range it costs the rounding
    error ``step**2 / 12``, beyond it the clipping error ``(c - t)**2``.
    """
    thresholds = {}
    for name, (counts, edges) in histograms.items():
        counts = counts.astype(np.float64)
        centres = (edges[:-1] + edges[1:]) / 2.0
        candidates = edges[1:].astype(np.float64)                                  # [K]
        step = candidates / levels                                                   # [K]
        clipped = np.clip(centres[None, :] - candidates[:, None], 0.0, None)        # [K, K]
        error = (clipped**2 + (clipped == 0) * (step[:, None] ** 2 / 12.0)) @ counts  # [K]
        thresholds[name] = float(candidates[int(np.argmin(error))]) if counts.sum() else float(edges[-1])
    return thresholds


def calibrate(graph_path: Path | str, feeds: Sequence[dict[str, np.ndarray]], method: str) -> Any:
    """Activation ranges of ``graph_path``'s quantizable inputs: an ``onnxruntime.quantization.TensorsData``."""
    _quantization()  # one error line when onnxruntime is missing
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData, create_calibrator

    method = check_method(method)
    ort_method = {"max": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                  "entropy": CalibrationMethod.Entropy, "mse": CalibrationMethod.Percentile}[method]
    options = {"symmetric": True, "percentile": PERCENTILE}
    if method == "entropy":
        options = {"symmetric": True}
    with tempfile.TemporaryDirectory(prefix="cp-calib.") as tmp:
        try:
            calibrator = create_calibrator(Path(graph_path), list(QUANTIZED_OPS),
                                           augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                           calibrate_method=ort_method, extra_options=options,
                                           providers=["CPUExecutionProvider"])
            with contextlib.redirect_stdout(io.StringIO()):  # ORT's histogram calibrators print progress
                for feed in feeds:
                    calibrator.collect_data(_FeedReader([feed]))
                if method != "mse":
                    return calibrator.compute_data()
            histograms = {name: (h[0], h[1]) for name, h in calibrator.collector.histogram_dict.items()}
        except (ValueError, RuntimeError) as exc:  # what ORT's calibrators raise
            raise ExportError(f"calibration of {Path(graph_path).name} failed: {exc}") from exc
    return TensorsData(ort_method, {name: TensorData(lowest=np.float32(-t), highest=np.float32(t))
                                    for name, t in mse_thresholds(histograms).items()})


def quantize(graph_path: Path | str, ranges: Any, *, exclude_nodes: Sequence[str] = ()) -> onnx.ModelProto:
    """The Q/DQ version of ``graph_path`` from ``ranges`` (:func:`calibrate`), ``exclude_nodes`` left float."""
    q = _quantization()
    from onnxruntime.quantization.calibrate import save_tensors_data

    with tempfile.TemporaryDirectory(prefix="cp-qdq.") as tmp:
        cache, out = Path(tmp) / "ranges.json", Path(tmp) / "qdq.onnx"
        save_tensors_data(ranges, cache)
        logging.getLogger().disabled, was_disabled = True, logging.getLogger().disabled  # ORT warns on the root logger
        try:
            q.quantize_static(
                str(graph_path), str(out), calibration_data_reader=None, quant_format=q.QuantFormat.QDQ,
                op_types_to_quantize=list(QUANTIZED_OPS), per_channel=True, reduce_range=False,
                activation_type=q.QuantType.QInt8, weight_type=q.QuantType.QInt8,
                nodes_to_exclude=list(exclude_nodes), calibrate_method=ranges.calibration_method,
                calibration_cache_path=str(cache),
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                               "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS)})
        except (ValueError, RuntimeError) as exc:
            raise ExportError(f"Q/DQ quantization of {Path(graph_path).name} failed: {exc}") from exc
        finally:
            logging.getLogger().disabled = was_disabled
        graph = onnx.load(str(out))
    for node in graph.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            node.name = node.name.lstrip("/")  # named after their tensor; outside every module scope
    return graph


def quantized_layers(graph: onnx.ModelProto) -> tuple[str, ...]:
    """Weighted nodes whose activation and weight both come through ``DequantizeLinear``, in graph order.

    Raises:
        ExportError: a ``DequantizeLinear`` feeding one has no scale initializer (the graph's
            Q/DQ scales are missing).
    """
    inits = {i.name for i in graph.graph.initializer}
    producer = {out: node for node in graph.graph.node for out in node.output}
    found = []
    for node in graph.graph.node:
        sources = [producer.get(name) for name in node.input[:2]]
        if node.op_type not in QUANTIZED_OPS or not all(s is not None and s.op_type == "DequantizeLinear"
                                                         for s in sources):
            continue
        missing = [s.name for s in sources if len(s.input) < 2 or s.input[1] not in inits]
        if missing:
            raise ExportError(f"INT8 node '{node.name}': DequantizeLinear {missing} has no scale initializer "
                              "(the graph's Q/DQ scales are missing)")
        found.append(node.name)
    return tuple(found)
