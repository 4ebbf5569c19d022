"""The facts Autoware's ``autoware_lidar_centerpoint`` needs about a model.

They are written twice from one source (:func:`autoware_model_params`): as the ROS 2 parameter
file ``<model>_ml_package.param.yaml`` (layout of the package's
``config/centerpoint_ml_package.param.yaml``: ``/**: ros__parameters: model_params: ...``),
and as ONNX ``metadata_props`` so that a lone ONNX file still describes itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx
import yaml

from centerpoint_deploy.config.schema import ModelConfig

#: Version of the ``model_params`` block Autoware's parameter schema knows.
MODEL_PARAMS_VERSION = "1.0.0"


def param_file_name(config: ModelConfig) -> str:
    """``<model>_ml_package.param.yaml`` with the config's model name."""
    return f"{config.name}_ml_package.param.yaml"


def autoware_model_params(config: ModelConfig) -> dict[str, Any]:
    """The ``model_params`` block of Autoware's ml_package parameter file.

    Autoware names classes in upper case (``CAR``, ``PEDESTRIAN``); ``point_feature_size`` is
    the raw per-point columns, ``encoder_in_feature_size`` the decorated features F, and
    ``has_twist`` says the head regresses velocity (the ``vel`` map).
    """
    vox = config.voxelization
    has_vel = any(name == "vel" for name, _, _ in config.head.common_heads)
    return {
        "model_params_version": MODEL_PARAMS_VERSION,
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


def write_param_yaml(config: ModelConfig, out_dir: Path) -> Path:
    """Write ``<model>_ml_package.param.yaml`` into ``out_dir``; return its path."""
    path = Path(out_dir) / param_file_name(config)
    document = {"/**": {"ros__parameters": {"model_params": autoware_model_params(config)}}}
    path.write_text(yaml.safe_dump(document, sort_keys=False, default_flow_style=None))
    return path


def set_metadata(model: onnx.ModelProto, facts: dict[str, Any]) -> None:
    """Replace ``model.metadata_props`` by ``facts``; values are stored as JSON text."""
    del model.metadata_props[:]
    for key, value in facts.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)


def read_metadata(model: onnx.ModelProto) -> dict[str, Any]:
    """Inverse of :func:`set_metadata`."""
    return {p.key: json.loads(p.value) for p in model.metadata_props}
