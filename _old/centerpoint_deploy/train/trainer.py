"""The training loop: frames -> CenterPoint checkpoint in mmdet3d layout.

One step: move the batch's point clouds to the training device, voxelize and decorate them
there (the shared pre-processing), encode pillars, scatter to BEV, run backbone-neck-head
(``forward_dense``), build targets on the device, compute the loss, step AdamW and the
learning-rate schedule. The checkpoint is written after every epoch and at the end.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch

from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.data.frame import Frame
from centerpoint_deploy.errors import ConfigError
from centerpoint_deploy.model import CenterPoint, build_model, save_checkpoint
from centerpoint_deploy.numerics import torch_switches
from centerpoint_deploy.preprocess import prepare_encoder_input, scatter_to_bev
from centerpoint_deploy.train.config import AugmentConfig, TrainConfig
from centerpoint_deploy.train.losses import LossTerms, centerpoint_loss
from centerpoint_deploy.train.samples import Batch, TrainingSamples, make_loader
from centerpoint_deploy.train.targets import build_targets

#: File names written into ``out_dir``.
CHECKPOINT_FILE = "checkpoint.pth"
LOG_FILE = "train_log.jsonl"

Validator = Callable[[CenterPoint, int], Mapping[str, float]]
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def compute_loss(model: CenterPoint, batch: Batch, config: ModelConfig, train_cfg: TrainConfig,
                 device: torch.device, amp: str = "off") -> LossTerms:
    """Forward one batch and return its loss terms (graph kept for ``backward``).

    Args:
        model: the detector, in train or eval mode.
        batch: ``(points, boxes, labels)`` lists from :func:`centerpoint_deploy.train.samples.collate_samples`.
        config: the model configuration.
        train_cfg: target and loss settings.
        device: where voxelization, the network and the loss run.
        amp: ``"off"``, ``"bf16"`` or ``"fp16"``: autocast dtype of the network; targets and
            losses stay float32.
    """
    points, boxes, labels = batch
    points = [p.to(device, non_blocking=True) for p in points]
    voxels, features = prepare_encoder_input(points, config)
    with torch.autocast(device.type, dtype=_AUTOCAST_DTYPES.get(amp, torch.bfloat16), enabled=amp != "off"):
        pillars = model.encode(features)  # [V, 1, C]
        bev = scatter_to_bev(pillars, voxels.coords, len(points), config.bev_shape)  # [B, C, H, W]
        task_outputs = model.forward_dense(bev)
    targets = build_targets([b.to(device, non_blocking=True) for b in boxes],
                            [lab.to(device, non_blocking=True) for lab in labels], config, train_cfg)
    return centerpoint_loss(task_outputs, targets, train_cfg)


@torch.no_grad()
def validation_loss(model: CenterPoint, frames: Sequence[Frame], config: ModelConfig, train_cfg: TrainConfig,
                    device: torch.device | str = "cpu") -> dict[str, float]:
    """Mean loss terms over ``frames`` without augmentation, model in eval mode.

    Returns:
        ``{"val_loss", "val_heatmap", "val_bbox"}``, each averaged over batches.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    samples = TrainingSamples(frames, config, AugmentConfig.disabled(), train_cfg.seed, train_cfg.min_points_in_box)
    loader = make_loader(samples, train_cfg.batch_size, train_cfg.num_workers, shuffle=False,
                         seed=train_cfg.seed, pin_memory=device.type == "cuda")
    totals = torch.zeros(3, device=device)
    for batch in loader:
        terms = compute_loss(model, batch, config, train_cfg, device, train_cfg.amp)
        totals += torch.stack([terms.total, terms.heatmap, terms.bbox])
    model.train(was_training)
    mean = (totals / len(loader)).tolist()
    return {"val_loss": mean[0], "val_heatmap": mean[1], "val_bbox": mean[2]}


def train(config: ModelConfig, dataset: Sequence[Frame], train_cfg: TrainConfig, out_dir: str | Path,
          device: torch.device | str = "cpu", log: Callable[[str], None] | None = print,
          validate: Validator | None = None, init_checkpoint: str | Path | None = None,
          half_checkpoint: bool = False, meta: Mapping[str, Any] | None = None,
          cudnn_benchmark: bool = True) -> Path:
    """Train a CenterPoint model on ``dataset`` and write its checkpoint.

    Args:
        config: the model to train (validated ``ModelConfig``).
        dataset: annotated frames whose ground truth uses ``config.class_names``.
        train_cfg: optimisation, target, loss and augmentation settings.
        out_dir: receives ``checkpoint.pth`` (mmdet3d layout ``{"state_dict", "meta"}``) and
            ``train_log.jsonl`` (one JSON object per log line and per validation).
        device: ``"cpu"`` or ``"cuda"``; pre-processing, network and loss all run there.
        log: receives human-readable progress lines; ``None`` for silence.
        validate: called after each epoch as ``validate(model, epoch)`` with the model in eval
            mode and gradients off; the returned metrics are logged and stored.
        init_checkpoint: start from these weights instead of a fresh initialisation.
        half_checkpoint: store the weights as float16.
        meta: extra entries for the checkpoint's ``meta`` (e.g. the dataset spec).
        cudnn_benchmark: let cuDNN pick the fastest convolution algorithms during training
            (restored afterwards).

    Returns:
        Path of the checkpoint.

    Raises:
        ConfigError: ``train_cfg`` is invalid, or asks for fp16 AMP or CUDA without a GPU.
        DatasetError: the dataset is empty or a frame lacks usable ground truth.
    """
    train_cfg.validate()
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{device}' requested but CUDA is not available here; use device 'cpu' (--device cpu)")
    if train_cfg.amp == "fp16" and device.type != "cuda":
        raise ConfigError(f"amp='fp16' needs a CUDA device, got device {device}; use amp='bf16' or 'off' on CPU")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    say = log or (lambda _line: None)

    samples = TrainingSamples(dataset, config, train_cfg.augment, train_cfg.seed, train_cfg.min_points_in_box)
    loader = make_loader(samples, train_cfg.batch_size, train_cfg.num_workers, shuffle=True,
                         seed=train_cfg.seed, pin_memory=device.type == "cuda")
    total_steps = train_cfg.epochs * len(loader)
    if train_cfg.max_steps is not None:
        total_steps = min(total_steps, train_cfg.max_steps)

    with torch.random.fork_rng():  # seeded initialisation without touching the caller's RNG
        torch.manual_seed(train_cfg.seed)
        model = build_model(config, checkpoint=init_checkpoint, device=device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    scheduler = _make_scheduler(optimizer, train_cfg, total_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=train_cfg.amp == "fp16")
    checkpoint = out_dir / CHECKPOINT_FILE
    say(f"training {config.name} on {len(dataset)} frames, {device}, {total_steps} steps "
        f"({len(loader)} per epoch, batch {train_cfg.batch_size}), amp={train_cfg.amp}")

    step = 0
    # cuDNN benchmarking on for training on CUDA (never turned off here if the caller had it on)
    benchmark = True if cudnn_benchmark and device.type == "cuda" else None
    with torch_switches(cudnn_benchmark=benchmark), open(out_dir / LOG_FILE, "w") as log_file:
        window = _LossWindow(device)
        for epoch in range(1, train_cfg.epochs + 1):
            samples.epoch = epoch
            for batch in _take(loader, total_steps - step):
                terms = compute_loss(model, batch, config, train_cfg, device, train_cfg.amp)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(terms.total).backward()
                if train_cfg.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                step += 1
                window.add(terms)
                if step % train_cfg.log_every == 0 or step == total_steps:
                    record = {"epoch": epoch, "step": step, "lr": scheduler.get_last_lr()[0], **window.flush()}
                    _emit(record, log_file, say)
            if validate is not None:
                model.eval()
                with torch.no_grad():
                    metrics = dict(validate(model, epoch))
                model.train()
                _emit({"epoch": epoch, "step": step, **metrics}, log_file, say)
            run_meta = _checkpoint_meta(config, train_cfg, epoch, step, meta)
            save_checkpoint(model, checkpoint, run_meta, half=half_checkpoint)
            if step >= total_steps:
                break
    say(f"wrote {checkpoint}")
    return checkpoint


class _LossWindow:
    """Sums loss terms on the device between log lines (one host sync per log line)."""

    def __init__(self, device: torch.device) -> None:
        self._sum = torch.zeros(3, device=device)
        self._count = 0
        self._start = time.perf_counter()

    def add(self, terms: LossTerms) -> None:
        self._sum += torch.stack([terms.total, terms.heatmap, terms.bbox]).detach()
        self._count += 1

    def flush(self) -> dict[str, float]:
        """Mean terms since the last flush plus steps per second; raises on a non-finite loss."""
        loss, heatmap, bbox = (self._sum / self._count).tolist()
        rate = self._count / (time.perf_counter() - self._start)
        if not math.isfinite(loss):
            raise FloatingPointError(f"training diverged: mean loss {loss} over the last {self._count} steps; "
                                     "lower the learning rate or enable gradient clipping")
        self._sum.zero_()
        self._count = 0
        self._start = time.perf_counter()
        return {"loss": loss, "heatmap": heatmap, "bbox": bbox, "steps_per_s": rate}


def _emit(record: dict[str, Any], log_file: Any, say: Callable[[str], None]) -> None:
    log_file.write(json.dumps(record) + "\n")
    log_file.flush()
    say("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))


def _take(loader: Any, limit: int) -> Iterator[Batch]:
    """At most ``limit`` batches of ``loader``."""
    for index, batch in enumerate(loader):
        if index >= limit:
            return
        yield batch


def _make_scheduler(optimizer: torch.optim.Optimizer, train_cfg: TrainConfig,
                    total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step schedule.

    ``onecycle``: mmdet3d's CenterPoint cyclic schedule: lr rises from ``lr / 10`` to ``lr``
    over the first 40 % of steps, then anneals (cosine) to ``lr * 1e-5``; Adam's beta1
    moves inversely between 0.95 and 0.85. ``cosine``: from ``lr`` down to ``lr * 1e-3``.
    ``constant``: ``lr`` throughout.
    """
    if train_cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=train_cfg.lr, total_steps=max(total_steps, 2),
                                                   pct_start=0.4, div_factor=10.0, final_div_factor=1e4)
    if train_cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=train_cfg.lr * 1e-3)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _step: 1.0)


def _checkpoint_meta(config: ModelConfig, train_cfg: TrainConfig, epoch: int, step: int,
                     extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """``meta`` of the checkpoint: mmdet3d's keys (``epoch``, ``iter``, ``dataset_meta``) plus ours."""
    return {
        "epoch": epoch,
        "iter": step,
        "dataset_meta": {"classes": list(config.class_names)},
        "config": config.to_dict(),
        "train_cfg": train_cfg.to_dict(),
        "seed": train_cfg.seed,
        **dict(extra or {}),
    }
