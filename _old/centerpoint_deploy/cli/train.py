"""``centerpoint-deploy train``: train a CenterPoint model and write an mmdet3d-layout checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from centerpoint_deploy.cli.common import CONFIG_HELP, DEVICE_HELP, bounded, positive, resolve_device
from centerpoint_deploy.errors import ConfigError
from centerpoint_deploy.outputs import folder_lock, prepare_dir
from centerpoint_deploy.train.config import AMP_MODES, SCHEDULES


def train_command(
    config: str = typer.Option("demo", help=CONFIG_HELP),
    dataset: str = typer.Option(..., help="Training data: T4 dataset dir, info pickle or split spec."),
    out: Path = typer.Option(..., help="Output directory (checkpoint.pth, train_log.jsonl)."),
    val_dataset: Optional[str] = typer.Option(None, help="Validation data; its loss is logged after each epoch."),
    epochs: int = typer.Option(20, callback=bounded(1), help="Passes over the training data."),
    max_steps: Optional[int] = typer.Option(None, callback=bounded(1), help="Stop after this many optimizer steps."),
    batch_size: int = typer.Option(4, callback=bounded(1), help="Point clouds per step."),
    lr: float = typer.Option(1e-3, callback=positive, help="Peak learning rate (one-cycle) or start rate (cosine)."),
    weight_decay: float = typer.Option(0.01, callback=bounded(0.0), help="AdamW weight decay."),
    schedule: str = typer.Option("onecycle", help=f"Learning-rate schedule: {', '.join(SCHEDULES)}."),
    device: str = typer.Option("auto", help=f"Where pre-processing, the network and the loss run: {DEVICE_HELP}"),
    amp: bool = typer.Option(False, "--amp/--no-amp", help="Mixed precision autocast."),
    amp_dtype: str = typer.Option("bf16", help="Autocast dtype with --amp: bf16 or fp16 (fp16 uses a GradScaler)."),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="Global flip/rotate/scale augmentation."),
    workers: int = typer.Option(2, callback=bounded(0), help="DataLoader worker processes."),
    seed: int = typer.Option(0, help="Seed of initialisation, data order and augmentation."),
    log_every: int = typer.Option(10, callback=bounded(1), help="Log the mean loss every N steps."),
    init_checkpoint: Optional[Path] = typer.Option(None, help="Start from these weights."),
    half_checkpoint: bool = typer.Option(False, "--half-checkpoint", help="Store the weights as float16."),
) -> None:
    """Train CenterPoint on annotated frames; equivalent to ``centerpoint_deploy.train.trainer.train``."""
    if amp_dtype not in AMP_MODES[1:]:
        raise ConfigError(f"--amp-dtype {amp_dtype!r} is not supported; allowed: {', '.join(AMP_MODES[1:])}")
    prepare_dir(out)
    target = resolve_device(device)

    from centerpoint_deploy.config import load_config
    from centerpoint_deploy.data import open_dataset
    from centerpoint_deploy.model import CenterPoint
    from centerpoint_deploy.terminal import plain_console
    from centerpoint_deploy.train.config import AugmentConfig, TrainConfig
    from centerpoint_deploy.train.trainer import Validator, train, validation_loss

    console = plain_console(stderr=False)
    model_config = load_config(config)
    amp_mode = amp_dtype if amp else "off"
    train_cfg = TrainConfig(
        epochs=epochs, max_steps=max_steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
        schedule=schedule, amp=amp_mode, augment=AugmentConfig() if augment else AugmentConfig.disabled(),
        num_workers=workers, log_every=log_every, seed=seed,
    ).validate()
    frames = open_dataset(dataset, class_names=model_config.class_names, sweeps_num=model_config.points.sweeps_num)
    validate: Optional[Validator] = None
    if val_dataset is not None:
        val_frames = open_dataset(val_dataset, class_names=model_config.class_names,
                                  sweeps_num=model_config.points.sweeps_num)

        def validate(model: CenterPoint, _epoch: int) -> dict[str, float]:
            return validation_loss(model, val_frames, model_config, train_cfg, target)
    console.print(f"training {model_config.name} on {target}")
    with folder_lock(out, "centerpoint-deploy train"):
        checkpoint = train(model_config, frames, train_cfg, out, device=target, log=console.print,
                           validate=validate, init_checkpoint=init_checkpoint, half_checkpoint=half_checkpoint,
                           meta={"dataset": dataset, "val_dataset": val_dataset})
    console.print(f"checkpoint: {checkpoint}")
