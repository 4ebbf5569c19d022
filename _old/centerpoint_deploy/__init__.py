"""Deploy CenterPoint LiDAR detectors (AWML / mmdetection3d) to ONNX, ONNX Runtime and TensorRT."""

__version__ = "0.1.0"
