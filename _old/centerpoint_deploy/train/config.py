"""Training settings: targets, losses, optimisation and augmentation.

Defaults follow mmdet3d's CenterPoint ``train_cfg`` and ``CenterHead`` losses
(``gaussian_overlap=0.1``, ``min_radius=2``, ``code_weights`` with velocity at 0.2,
heatmap loss weight 1, bbox L1 weight 0.25). Units: metres, radians, seconds.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from centerpoint_deploy.config.schema import plain_data
from centerpoint_deploy.errors import ConfigError

#: Learning-rate schedules :func:`centerpoint_deploy.train.trainer.train` knows.
SCHEDULES = ("onecycle", "cosine", "constant")
#: Autocast modes: ``"off"`` (float32), ``"bf16"`` or ``"fp16"`` (fp16 adds a GradScaler).
AMP_MODES = ("off", "bf16", "fp16")
#: Number of regression channels per object: reg 2, height 1, dim 3, rot 2, vel 2.
CODE_SIZE = 10


def _fail(field_name: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"train config field '{field_name}' = {value!r} is invalid: {allowed}")


@dataclass(frozen=True)
class AugmentConfig:
    """Global augmentations, applied to points and boxes together (see ``train/augment.py``).

    Attributes:
        flip_x: mirror x -> -x with probability 0.5 (mmdet3d "vertical" BEV flip).
        flip_y: mirror y -> -y with probability 0.5 (mmdet3d "horizontal" BEV flip).
        rotation_range: ``(low, high)`` radians; a uniform angle rotates the scene about z.
        scale_range: ``(low, high)``; a uniform factor scales positions, sizes and velocities.
        translation_std: ``(sx, sy, sz)`` metres; Gaussian shift of the whole scene.
        shuffle_points: permute points so hard voxelization keeps a random subset per pillar.
    """

    flip_x: bool = True
    flip_y: bool = True
    rotation_range: tuple[float, float] = (-math.pi / 4, math.pi / 4)
    scale_range: tuple[float, float] = (0.95, 1.05)
    translation_std: tuple[float, float, float] = (0.0, 0.0, 0.0)
    shuffle_points: bool = True

    def validate(self) -> None:
        lo, hi = self.rotation_range
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            _fail("augment.rotation_range", self.rotation_range, "finite (low, high) with low <= high")
        lo, hi = self.scale_range
        if not (0 < lo <= hi and math.isfinite(hi)):
            _fail("augment.scale_range", self.scale_range, "(low, high) with 0 < low <= high")
        if len(self.translation_std) != 3 or any(not math.isfinite(s) or s < 0 for s in self.translation_std):
            _fail("augment.translation_std", self.translation_std, "3 finite values >= 0")

    @classmethod
    def disabled(cls) -> "AugmentConfig":
        """No augmentation at all (validation, overfitting checks)."""
        return cls(flip_x=False, flip_y=False, rotation_range=(0.0, 0.0), scale_range=(1.0, 1.0),
                   translation_std=(0.0, 0.0, 0.0), shuffle_points=False)


@dataclass(frozen=True)
class TrainConfig:
    """Everything :func:`centerpoint_deploy.train.trainer.train` needs besides the model config.

    Attributes:
        epochs: passes over the training set.
        max_steps: stop after this many optimizer steps (``None``: run all epochs).
        batch_size: point clouds per step.
        lr: peak learning rate (one-cycle), start rate (cosine) or the rate (constant).
        weight_decay: AdamW decoupled weight decay.
        schedule: one of :data:`SCHEDULES`.
        grad_clip: max L2 norm of all gradients (mmdet3d uses 35); ``None`` disables.
        amp: one of :data:`AMP_MODES`; ``"fp16"`` needs CUDA.
        gaussian_overlap: ``min_overlap`` of the CornerNet radius rule.
        min_radius: smallest Gaussian radius, in feature-map cells.
        max_objs: regression slots per task and point cloud; boxes past it are dropped.
        min_points_in_box: ground-truth boxes with fewer LiDAR points are left out of training
            (mmdet3d drops boxes with ``num_lidar_pts == 0``); 0 keeps every box.
        code_weights: per-channel L1 weights, order reg(2), height, dim(3), rot(2), vel(2).
        heatmap_weight: weight of the Gaussian focal loss.
        bbox_weight: weight of the L1 regression loss.
        augment: global augmentation ranges.
        num_workers: DataLoader worker processes (0 loads in the main process).
        log_every: log the running loss every this many steps.
        seed: seeds model init, data order and augmentation.
    """

    epochs: int = 20
    max_steps: int | None = None
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.01
    schedule: str = "onecycle"
    grad_clip: float | None = 35.0
    amp: str = "off"
    gaussian_overlap: float = 0.1
    min_radius: int = 2
    max_objs: int = 500
    min_points_in_box: int = 1
    code_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2)
    heatmap_weight: float = 1.0
    bbox_weight: float = 0.25
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    num_workers: int = 2
    log_every: int = 10
    seed: int = 0

    def validate(self) -> "TrainConfig":
        """Check every field; return self. Raises :class:`ConfigError`."""
        for name in ("epochs", "batch_size", "max_objs", "log_every"):
            if getattr(self, name) < 1:
                _fail(name, getattr(self, name), "must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            _fail("max_steps", self.max_steps, "must be >= 1 or None")
        if not (math.isfinite(self.lr) and self.lr > 0):
            _fail("lr", self.lr, "must be a positive finite number")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            _fail("weight_decay", self.weight_decay, "must be >= 0")
        if self.schedule not in SCHEDULES:
            _fail("schedule", self.schedule, f"one of {', '.join(SCHEDULES)}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            _fail("grad_clip", self.grad_clip, "must be > 0 or None")
        if self.amp not in AMP_MODES:
            _fail("amp", self.amp, f"one of {', '.join(AMP_MODES)}")
        if not 0 < self.gaussian_overlap < 1:
            _fail("gaussian_overlap", self.gaussian_overlap, "must lie in (0, 1)")
        if self.min_points_in_box < 0:
            _fail("min_points_in_box", self.min_points_in_box, "must be >= 0")
        if self.min_radius < 0:
            _fail("min_radius", self.min_radius, "must be >= 0")
        if len(self.code_weights) != CODE_SIZE or any(w < 0 for w in self.code_weights):
            _fail("code_weights", self.code_weights, f"{CODE_SIZE} non-negative weights (reg 2, height, dim 3, rot 2, vel 2)")
        if self.heatmap_weight < 0 or self.bbox_weight < 0:
            _fail("heatmap_weight/bbox_weight", (self.heatmap_weight, self.bbox_weight), "non-negative")
        if self.num_workers < 0:
            _fail("num_workers", self.num_workers, "must be >= 0")
        self.augment.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists, not tuples), stored in the checkpoint's ``meta``."""
        return plain_data(dataclasses.asdict(self))
