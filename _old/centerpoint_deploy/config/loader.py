"""Load a :class:`ModelConfig` from a preset name, a project YAML file or an AWML ``.py`` config."""

from __future__ import annotations

from pathlib import Path

import yaml

from centerpoint_deploy.config.awml import model_config_from_awml
from centerpoint_deploy.config.pyconfig import read_python_config
from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.errors import ConfigError

PRESET_DIR = Path(__file__).parent / "presets"
YAML_SUFFIXES = (".yaml", ".yml")
PYTHON_SUFFIXES = (".py",)


def list_presets() -> list[str]:
    """Names of the bundled presets (``tiny``, ``demo``, ``j6gen2_base``, ...), sorted."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_config(spec: str | Path) -> ModelConfig:
    """Load and validate a model configuration.

    Args:
        spec: a preset name (see :func:`list_presets`), a project YAML file (the nested dict
            :meth:`ModelConfig.to_dict` writes) or an AWML / mmdet3d Python config file,
            which is read without importing anything (see :mod:`centerpoint_deploy.config.awml`).

    Raises:
        ConfigError: the spec names no preset or file, or the file is malformed or invalid.
    """
    path = Path(spec)
    if path.suffix in YAML_SUFFIXES + PYTHON_SUFFIXES or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {str(spec)!r} does not exist")
        if path.suffix in PYTHON_SUFFIXES:
            return model_config_from_awml(read_python_config(path), name=path.stem, source=str(path))
        if path.suffix in YAML_SUFFIXES:
            return _load_yaml(path)
        raise ConfigError(f"config file {str(spec)!r} has suffix {path.suffix!r}; "
                          f"supported: {', '.join(YAML_SUFFIXES + PYTHON_SUFFIXES)}")
    preset = PRESET_DIR / f"{spec}.yaml"
    if str(spec).isidentifier() and preset.is_file():
        return _load_yaml(preset)
    raise ConfigError(f"config {str(spec)!r} is neither a preset ({', '.join(list_presets())}) "
                      f"nor an existing {'/'.join(YAML_SUFFIXES + PYTHON_SUFFIXES)} file")


def save_config(config: ModelConfig, path: str | Path) -> Path:
    """Write ``config`` as project YAML that :func:`load_config` reads back equal; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
    return path


def _load_yaml(path: Path) -> ModelConfig:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read YAML config {path}: {exc}") from exc
    if data is None or data == {}:
        raise ConfigError(f"YAML config {path} is empty; expected the mapping that `centerpoint-deploy config show "
                          "<preset>` prints (an empty file is not taken as the default model)")
    try:
        return ModelConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
