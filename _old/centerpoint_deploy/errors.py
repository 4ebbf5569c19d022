"""Typed errors. Every user-facing failure is a subclass of :class:`CenterPointError`.

The CLI catches :class:`CenterPointError`, prints its message on one line and exits with
status 1. Any other exception is a bug in this package and keeps its traceback.
"""


class CenterPointError(Exception):
    """Base class of every error caused by user input or environment."""


class ConfigError(CenterPointError):
    """A model or deploy configuration is malformed or has a value out of range."""


class CheckpointError(CenterPointError):
    """A checkpoint cannot be read or does not fit the model (missing/unexpected/mis-shaped keys)."""


class PointCloudError(CenterPointError):
    """A point cloud file or tensor is corrupt, truncated, empty or holds non-finite values."""


class DatasetError(CenterPointError):
    """A dataset (T4 scene, info pickle, split file) is malformed or incomplete."""


class ExportError(CenterPointError):
    """Export to ONNX / TensorRT failed, or the exported graph disagrees with PyTorch."""


class BackendError(CenterPointError):
    """A backend received inputs that do not fit its contract, or its artifacts are invalid."""


class BundleError(BackendError):
    """A deploy bundle has a missing or edited file, or a file the Autoware node would refuse."""


class BackendUnavailableError(BackendError):
    """A backend's runtime (onnxruntime, tensorrt, CUDA) is not installed or not usable here."""


class VerificationError(CenterPointError):
    """Verification could not run (not: verification ran and found differences)."""


class EvaluationError(CenterPointError):
    """Evaluation inputs (predictions, ground truth, metric config) are invalid."""


class RankFailedError(EvaluationError):
    """Another rank (or this one) failed; the message names the rank(s) and their errors."""


class BenchmarkError(CenterPointError):
    """A benchmark was asked for with settings that cannot be measured (counts, stages, variants)."""


class OutputError(CenterPointError):
    """An output location cannot be written (a file where a folder belongs, read-only, in use),
    or a path derived from data would land outside it."""
