"""Reduced precision written into the exported ONNX: fp16 casts and INT8 Q/DQ, from calibration data.

TensorRT 11 builds strongly typed networks (contract §6): the precision of every layer is
the one the ONNX says. The submodules, dependencies pointing down:

- :mod:`.calibration`: calibration inputs of both graphs from the user's dataset frames;
- :mod:`.activations`: activation magnitudes of a graph over those inputs;
- :mod:`.fp16`: fp16 graphs, overflowing nodes kept fp32;
- :mod:`.int8`: Q/DQ graphs from calibrated ranges (four methods);
- :mod:`.sensitivity`: per layer group SNR and the mixed-precision choice;
- :mod:`.plan`: the chosen plan, a typed value written as JSON beside the ONNX files;
- :mod:`.fake_quant`: the same Q/DQ applied in PyTorch, scales read from the ONNX.
"""

from typing import Literal

#: ``export --precision`` values.
PRECISIONS = ("fp32", "fp16", "int8")
Precision = Literal["fp32", "fp16", "int8"]
