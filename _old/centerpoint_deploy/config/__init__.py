"""Model configuration: the typed :class:`ModelConfig` and its loaders (presets, YAML, AWML .py)."""

from centerpoint_deploy.config.loader import list_presets, load_config, save_config
from centerpoint_deploy.config.schema import ModelConfig

__all__ = ["ModelConfig", "list_presets", "load_config", "save_config"]
