"""The facts Autoware's ``autoware_lidar_centerpoint`` needs about a model, and the node's grid rule.

One source (:func:`autoware_model_params`) feeds three places: the ``model_params`` block of the
v4.1 bundle's ``ml_package.param.yaml`` (see :mod:`~centerpoint_deploy.export.bundle`), the
legacy ``<model>_ml_package.param.yaml`` for nodes older than bundle v4.1
(:func:`legacy_document`), and the ONNX ``metadata_props`` so that a lone ONNX file still
describes itself.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import onnx

from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.errors import ExportError

#: ``model_params_version`` of the legacy (pre-v4.1) parameter file.
LEGACY_MODEL_PARAMS_VERSION = "1.0.0"


def legacy_param_file_name(config: ModelConfig) -> str:
    """``<model>_ml_package.param.yaml``: the legacy parameter file's name."""
    return f"{config.name}_ml_package.param.yaml"


def autoware_model_params(config: ModelConfig) -> dict[str, Any]:
    """The model facts of the node's ``model_params`` (no thresholds: those are post-processing).

    Autoware names classes in upper case (``CAR``, ``PEDESTRIAN``; the node maps names to its
    labels case-sensitively); ``point_feature_size`` is the raw per-point columns,
    ``encoder_in_feature_size`` the decorated features F, and ``has_twist`` says the head
    regresses velocity (the ``vel`` map).
    """
    vox = config.voxelization
    has_vel = any(name == "vel" for name, _, _ in config.head.common_heads)
    return {
        "class_names": [name.upper() for name in config.class_names],
        "point_feature_size": len(config.points.use_dim),
        "max_voxel_size": vox.max_voxels,
        "point_cloud_range": [float(v) for v in vox.point_cloud_range],
        "voxel_size": [float(v) for v in vox.voxel_size],
        "downsample_factor": config.decode.out_size_factor,
        "encoder_in_feature_size": config.num_features,
        "has_variance": False,
        "has_twist": has_vel,
    }


def legacy_document(config: ModelConfig) -> dict[str, Any]:
    """The legacy parameter file: ``/**: ros__parameters: model_params: {model_params_version: "1.0.0", ...}``."""
    params = {"model_params_version": LEGACY_MODEL_PARAMS_VERSION, **autoware_model_params(config)}
    return {"/**": {"ros__parameters": {"model_params": params}}}


def node_grid_size(point_cloud_range: list[float] | tuple[float, ...],
                   voxel_size: list[float] | tuple[float, ...]) -> tuple[int, int, int]:
    """``(nx, ny, nz)`` as the node computes it: ``size_t((max - min) / voxel)`` in float32.

    The node casts the double parameters to float, subtracts and divides in float and
    truncates (``CenterPointConfig``), so a range that is a whole number of voxels in decimal
    can lose one cell (``(7.2f - -7.2f) / 0.3f`` = 47.99998 -> 47).
    """
    r = np.asarray(point_cloud_range, dtype=np.float32)
    v = np.asarray(voxel_size, dtype=np.float32)
    return tuple(int((r[i + 3] - r[i]) / v[i]) for i in range(3))  # type: ignore[return-value]


def check_node_grid(config: ModelConfig) -> None:
    """Refuse a config for which the node would compute another grid than the exported graphs.

    Raises:
        ExportError: naming both grids, the range and the voxel size.
    """
    vox = config.voxelization
    node = node_grid_size(vox.point_cloud_range, vox.voxel_size)
    ours = config.grid_size
    if node[:2] != ours[:2]:
        raise ExportError(
            f"config '{config.name}': Autoware's node computes a {node[0]} x {node[1]} grid from "
            f"point_cloud_range {list(vox.point_cloud_range)} and voxel_size {list(vox.voxel_size)} "
            f"(size_t((max - min) / voxel) in float32), this model's grid is {ours[0]} x {ours[1]}; "
            "choose a range that stays a whole number of voxels in float32")


def set_metadata(model: onnx.ModelProto, facts: dict[str, Any]) -> None:
    """Replace ``model.metadata_props`` by ``facts``; values are stored as JSON text."""
    del model.metadata_props[:]
    for key, value in facts.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)


def read_metadata(model: onnx.ModelProto) -> dict[str, Any]:
    """Inverse of :func:`set_metadata`; a value that is not JSON text is kept as the raw string."""
    facts: dict[str, Any] = {}
    for prop in model.metadata_props:
        try:
            facts[prop.key] = json.loads(prop.value)
        except json.JSONDecodeError:
            facts[prop.key] = prop.value
    return facts
