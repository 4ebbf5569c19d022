"""CenterPoint in plain PyTorch with mmdet3d's module names, and checkpoint I/O."""

from centerpoint_deploy.model.build import build_model
from centerpoint_deploy.model.centerpoint import CenterPoint
from centerpoint_deploy.model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint

__all__ = ["CenterPoint", "build_model", "load_checkpoint", "read_checkpoint", "save_checkpoint"]
