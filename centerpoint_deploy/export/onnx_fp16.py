"""An fp16 copy of an exported graph for ONNX Runtime, with float32 inputs and outputs.

Weights and activations become float16; Cast nodes at the graph boundary keep the I/O
float32, so the copy still follows the Autoware contract and runs behind the same
:class:`~centerpoint_deploy.backends.onnxruntime.OnnxRuntimeBackend`. The conversion is
``onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True)``, shipped
with onnxruntime (CPU and GPU packages).
"""

from __future__ import annotations

from pathlib import Path

import onnx

from centerpoint_deploy.errors import BackendUnavailableError, ExportError


def convert_onnx_to_fp16(source: Path | str, target: Path | str) -> Path:
    """Write an fp16 version of the ONNX file ``source`` to ``target``.

    Returns:
        ``target``.

    Raises:
        ExportError: ``source`` is missing or not an ONNX model.
        BackendUnavailableError: this onnxruntime lacks ``onnxruntime.transformers.float16``.
    """
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise ExportError(f"ONNX file {source} does not exist")
    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError as exc:
        raise BackendUnavailableError("fp16 ONNX conversion needs onnxruntime.transformers.float16 "
                                      f"(onnxruntime >= 1.10 ships it): {exc}") from exc
    try:
        model = onnx.load(str(source))
    except Exception as exc:  # onnx raises DecodeError / ValueError / OSError
        raise ExportError(f"{source} is not a readable ONNX model: {exc}") from exc
    converted = convert_float_to_float16(model, keep_io_types=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(converted, str(target))
    return target
