"""What the main job runs on, resolved from its settings: device, weights, data, frames, metric.

Each function turns one setting (or its ``None``/``auto`` default) into the concrete value,
or raises a :class:`CenterPointError` saying what is missing and how to supply it.
"""

from __future__ import annotations

import datetime
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from centerpoint_deploy.device import resolve_device
from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.errors import BackendUnavailableError, CheckpointError, ConfigError
from centerpoint_deploy.evaluate.data_classes import MetricConfig
from centerpoint_deploy.evaluate.io import load_metric_config
from centerpoint_deploy.backends.tensorrt import import_tensorrt

#: The demo model the lead ships with the package (mmdet3d layout, ``demo`` preset).
DEMO_CHECKPOINT = Path(__file__).resolve().parent.parent / "assets" / "demo_centerpoint.pth"
#: The preset the demo checkpoint was trained with.
DEMO_CONFIG = "demo"
#: Class ranges are lowered to a multiple of this (metres) when they lie beyond the grid.
RANGE_STEP = 10.0


def job_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as :func:`resolve_device` checks it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return resolve_device(device)


def job_checkpoint(checkpoint: Path | None, config: str, demo_checkpoint: Path = DEMO_CHECKPOINT) -> Path:
    """The checkpoint file to deploy: the one given, or the bundled demo checkpoint for the demo config.

    Raises:
        CheckpointError: the file does not exist (for the demo: it is not installed).
        ConfigError: no checkpoint given for a config other than the demo's.
    """
    if checkpoint is not None:
        if checkpoint.is_dir():
            raise CheckpointError(f"checkpoint {checkpoint} is a folder, not a checkpoint file")
        if not checkpoint.is_file():
            raise CheckpointError(f"checkpoint {checkpoint} does not exist")
        return checkpoint
    if config != DEMO_CONFIG:
        raise ConfigError(f"config {config!r} needs a checkpoint (--checkpoint PATH); the bundled demo "
                          f"checkpoint only fits the '{DEMO_CONFIG}' config")
    if not demo_checkpoint.is_file():
        raise CheckpointError(f"the demo checkpoint {demo_checkpoint} is not installed; pass --checkpoint PATH "
                              "(a CenterPoint checkpoint trained with the 'demo' config)")
    return demo_checkpoint


def job_tensorrt(setting: bool | None, device: torch.device) -> tuple[bool, str]:
    """Whether to build TensorRT engines, and why not.

    ``setting`` is ``export.tensorrt``: ``None`` builds when possible, ``True`` insists
    (raising when impossible), ``False`` never builds.
    """
    if setting is False:
        return False, "disabled (export.tensorrt: false)"
    if device.type != "cuda":
        if setting:
            raise ConfigError(f"deploy config field 'export.tensorrt' = True needs a CUDA device; the device is {device}")
        return False, f"the device is {device} (TensorRT engines need CUDA)"
    try:
        import_tensorrt()
    except BackendUnavailableError as exc:
        if setting:
            raise
        return False, str(exc)
    return True, ""


def job_dataset(dataset: str | None) -> str:
    """The dataset spec: the one given, or the generated sample validation set (made on first use)."""
    if dataset is not None:
        return dataset
    from centerpoint_deploy.data.sample import default_sample_dir

    return str(default_sample_dir())


def job_out_dir(out: Path | None, now: datetime.datetime | None = None) -> Path:
    """``out``, or ``outputs/deploy-<YYYYmmdd-HHMMSS>`` in the working directory."""
    if out is not None:
        return out
    stamp = (now or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")
    return Path("outputs") / f"deploy-{stamp}"


def spread_indices(total: int, count: int | None) -> list[int]:
    """``count`` indices spread evenly over ``range(total)`` (first and last included), ascending.

    ``None`` or ``count >= total`` gives all of them. E.g. ``spread_indices(20, 3) == [0, 10, 19]``
    (``round`` of ``linspace(0, 19, 3)`` = 0, 9.5, 19, halves rounded to even).
    """
    if count is None or count >= total:
        return list(range(total))
    if count == 1:
        return [0]
    return sorted({int(i) for i in np.rint(np.linspace(0, total - 1, count))})


def model_reach(config: ModelConfig) -> float:
    """Radius (m) of the largest circle around the LiDAR origin inside the BEV grid."""
    x_min, y_min, _, x_max, y_max, _ = config.voxelization.point_cloud_range
    return float(min(-x_min, x_max, -y_min, y_max))


def job_metric_config(metric: str, class_range: float | None, config: ModelConfig) -> MetricConfig:
    """The metric settings for ``config``'s model.

    ``class_range`` (metres) replaces every class's range. Without it, the metric's own ranges
    are used, but a range beyond :func:`model_reach` is lowered to the largest multiple of
    :data:`RANGE_STEP` inside the grid (the largest whole metre for grids under 10 m): objects
    the grid cannot see would only count as misses. The T4 metric (121 m) on the demo's
    ±51.2 m grid is thus evaluated to 50 m, on the AWML j6gen2 ±121.6 m grid to 121 m as AWML.
    Distance buckets reaching past the largest class range are dropped.
    """
    base = load_metric_config(metric, config.class_names)
    if class_range is not None:
        ranges = {name: float(class_range) for name in base.class_range}
    else:
        reach = model_reach(config)
        if reach < 1.0:
            raise ConfigError(f"the model's grid reaches {reach:.2f} m from the origin; set evaluate.class_range")
        cap = math.floor(reach / RANGE_STEP) * RANGE_STEP or float(math.floor(reach))
        ranges = {name: (r if r <= reach else cap) for name, r in base.class_range.items()}
    furthest = max(ranges.values())
    buckets = tuple(b for b in base.distance_buckets if b[1] <= furthest)
    return MetricConfig(**{**_fields(base), "class_range": ranges, "distance_buckets": buckets})


def _fields(metric: MetricConfig) -> dict:
    return {name: getattr(metric, name) for name in metric.__dataclass_fields__}


def spread_subset(indices: Sequence[int], count: int | None) -> list[int]:
    """``count`` of ``indices`` spread evenly over them (see :func:`spread_indices`); ``0`` gives none."""
    if count == 0:
        return []
    return [indices[i] for i in spread_indices(len(indices), count)]
