"""``centerpoint-deploy synth``: write a synthetic T4 dataset and a train/val split file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from centerpoint_deploy.cli.common import bounded, positive
from centerpoint_deploy.outputs import prepare_dir


def synth_command(
    out_dir: Path = typer.Argument(..., help="Dataset root to write scene folders and split.yaml into."),
    scenes: int = typer.Option(2, callback=bounded(1), help="Scenes to generate."),
    frames: int = typer.Option(40, callback=bounded(1), help="Key frames per scene."),
    seed: int = typer.Option(0, help="Seed; the same seed writes the same files."),
    beams: int = typer.Option(64, callback=bounded(2), help="LiDAR beams."),
    columns: int = typer.Option(1800, callback=bounded(8), help="Azimuth steps per revolution (1800 = 0.2 deg)."),
    max_range: float = typer.Option(120.0, "--range", callback=positive, help="LiDAR max range (m)."),
    key_interval: int = typer.Option(1, callback=bounded(1), help="Sweeps per key frame (2 = one non-key sweep between)."),
    lead_in: int = typer.Option(1, callback=bounded(0), help="Sweeps before the first key frame."),
    no_velocity: bool = typer.Option(False, "--no-velocity", help="Omit the T4 velocity field."),
    val_fraction: float = typer.Option(0.5, callback=bounded(0.0, 1.0), help="Share of scenes drawn (with --seed) into val."),
    val_scene: Optional[list[str]] = typer.Option(None, help="Put this scene in val (repeatable); overrides --val-fraction."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing scene folders."),
) -> None:
    """Generate synthetic T4 scenes; equivalent to ``centerpoint_deploy.data.synthetic.generate_dataset``."""
    prepare_dir(out_dir, "the dataset root")

    from centerpoint_deploy.data.splits import make_split, write_split
    from centerpoint_deploy.data.synthetic import LidarConfig, WorldConfig, generate_dataset
    from centerpoint_deploy.terminal import plain_console, progress_bars

    console = plain_console()
    sensor = LidarConfig(beams=beams, columns=columns, max_range=max_range)
    start = time.perf_counter()
    with progress_bars(console) as progress:
        paths = generate_dataset(out_dir, scenes, frames, seed, sensor, WorldConfig(), key_frame_interval=key_interval,
                                 lead_in_sweeps=lead_in, write_velocity=not no_velocity, overwrite=overwrite,
                                 progress=progress)
    elapsed = time.perf_counter() - start
    split = write_split(out_dir / "split.yaml", make_split([p.name for p in paths], val_fraction=val_fraction,
                                                           seed=seed, val_scenes=val_scene))
    typer.echo(f"wrote {len(paths)} scene(s) x {frames} key frames to {out_dir} in {elapsed:.1f} s; split: {split} "
               f"(open with '{split}:train' / '{split}:val')")
