"""``centerpoint-deploy config``: show a resolved model configuration, list presets.

Python equivalent::

    config = load_config("path/to/awml_config.py")
    save_config(config, "model.yaml")
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from centerpoint_deploy.cli.common import CONFIG_HELP, TYPER_SETTINGS
from centerpoint_deploy.outputs import prepare_file

config_app = typer.Typer(help="Inspect and convert model configurations.", **TYPER_SETTINGS)


@config_app.command("show")
def show(
    spec: str = typer.Argument(..., help=CONFIG_HELP),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also write the project YAML here."),
) -> None:
    """Print the validated configuration as project YAML, with derived grid sizes as comments."""
    import yaml

    from centerpoint_deploy.config import load_config, save_config

    if output is not None:
        prepare_file(output, "--output")
    config = load_config(spec)
    typer.echo(f"# grid {config.grid_size}, BEV map {config.bev_shape}, head maps {config.feature_map_shape}, "
               f"{config.num_features} features per point")
    typer.echo(yaml.safe_dump(config.to_dict(), sort_keys=False), nl=False)
    if output is not None:
        save_config(config, output)


@config_app.command("presets")
def presets() -> None:
    """List the bundled preset names."""
    from centerpoint_deploy.config import list_presets

    typer.echo("\n".join(list_presets()))
