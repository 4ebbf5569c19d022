"""Export: ONNX graphs, manifest, Autoware parameters, TensorRT op check and engine builds.

Import the submodules directly (``export.onnx_export``, ``export.tensorrt_build``, ...). The
tensor contract both export and the backends check against is :mod:`centerpoint_deploy.graph_io`.
"""
