"""Export: ONNX graphs, manifest, Autoware parameters, TensorRT op check and engine builds.

Import the submodules directly (``export.onnx_export``, ``export.tensorrt_build``, ...); this
package imports nothing so that the backends can use :mod:`.graph_io` without a cycle.
"""
