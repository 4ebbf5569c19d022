"""``centerpoint-deploy bundle check DIR``: validate an Autoware model bundle, file hashes included.

Python equivalent::

    manifest = check_bundle("deploy/")   # raises BundleError naming the file and the key
"""

from __future__ import annotations

from pathlib import Path

import typer

bundle_app = typer.Typer(help="Inspect Autoware model bundles (deploy directories).", no_args_is_help=True)


@bundle_app.command("check")
def check(bundle_dir: Path = typer.Argument(..., help="Bundle folder (deploy_metadata.yaml, ONNX and parameter files)."),
          ) -> None:
    """Check a bundle against the Autoware node's rules, its recorded sha256 and its ONNX metadata."""
    from rich.console import Console
    from rich.markup import escape

    from centerpoint_deploy.export.bundle import check_bundle

    manifest = check_bundle(bundle_dir)
    files = sorted(set(manifest.files) | {e.file for e in manifest.engines.values()})
    checks = ", ".join(f"{name} {'passed' if r.passed else 'FAILED'}" for name, r in manifest.checks.items()) or "none"
    Console(highlight=False).print(escape(
        f"ok: {bundle_dir} is a {manifest.bundle_version} bundle of '{manifest.model_name}' "
        f"(classes {', '.join(manifest.class_names)}; {manifest.precision} ONNX, trt_precision {manifest.trt_precision}; "
        f"{len(files)} files, every sha256 matches; checks recorded: {checks})"), soft_wrap=True)
