"""The training loop on the tiny preset: loss goes down, one frame is overfitted, checkpoint is complete."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.data.frame import Frame, GroundTruth
from centerpoint_deploy.errors import ConfigError, DatasetError
from centerpoint_deploy.model import build_model
from centerpoint_deploy.postprocess import postprocess
from centerpoint_deploy.preprocess import prepare_encoder_input, scatter_to_bev
from centerpoint_deploy.train.config import AugmentConfig, TrainConfig
from centerpoint_deploy.train.trainer import CHECKPOINT_FILE, LOG_FILE, train

# Three cars and a pedestrian inside the tiny grid (+-12.8 m): [x, y, z, l, w, h, yaw, vx, vy].
GT_BOXES = np.array([
    [4.0, 3.0, -0.9, 4.2, 1.8, 1.6, 0.3, 2.0, 0.5],
    [-5.0, -4.0, -0.9, 4.5, 1.9, 1.5, -1.2, 0.0, 0.0],
    [-3.0, 6.5, -0.9, 4.0, 1.8, 1.5, 2.5, -1.0, 1.0],
    [6.0, -6.0, -0.85, 0.7, 0.7, 1.7, 0.0, 1.0, 0.0],
], dtype=np.float32)
GT_LABELS = np.array([0, 0, 0, 4], dtype=np.int64)
CLASSES = ("car", "truck", "bus", "bicycle", "pedestrian")


def make_frame(seed: int = 0, class_names: tuple[str, ...] = CLASSES) -> Frame:
    """Ground plane at z = -1.7 m plus points filling each box; columns x, y, z, intensity, time lag."""
    rng = np.random.default_rng(seed)
    ground = np.column_stack([rng.uniform(-12.8, 12.8, (400, 2)), np.full(400, -1.7)])
    objects = []
    for box in GT_BOXES:
        local = rng.uniform(-0.5, 0.5, (300, 3)) * box[3:6]
        c, s = np.cos(box[6]), np.sin(box[6])
        objects.append(np.column_stack([box[0] + c * local[:, 0] - s * local[:, 1],
                                        box[1] + s * local[:, 0] + c * local[:, 1], box[2] + local[:, 2]]))
    xyz = np.concatenate([ground] + objects)
    points = np.column_stack([xyz, rng.uniform(0, 255, len(xyz)), np.zeros(len(xyz))]).astype(np.float32)
    gt = GroundTruth(GT_BOXES.copy(), GT_LABELS.copy(), class_names, np.full(4, 300), [""] * 4, [""] * 4)
    return Frame(token=f"frame-{seed}", scene="hand-made", timestamp=0, lidar_path="", points=points, gt=gt)


def detect(checkpoint: Path, config: ModelConfig, frame: Frame):
    model = build_model(config, checkpoint=checkpoint)
    with torch.no_grad():
        voxels, features = prepare_encoder_input([torch.from_numpy(frame.points)], config)
        bev = scatter_to_bev(model.encode(features), voxels.coords, 1, config.bev_shape)
        return postprocess(model.forward_dense(bev), config)[0]


def fast_bn_config(config: ModelConfig) -> ModelConfig:
    """``config`` with BatchNorm momentum 0.1 everywhere, so that the running statistics used in
    eval mode settle within a 100-step run (the presets' 0.01 needs thousands of steps)."""
    data = config.to_dict()
    for part in ("voxel_encoder", "backbone", "neck", "head"):
        data[part]["norm_momentum"] = 0.1
    return ModelConfig.from_dict(data)


def test_overfits_one_frame(tiny_config: ModelConfig, tmp_path: Path) -> None:
    config = fast_bn_config(tiny_config)
    cfg = TrainConfig(epochs=1, max_steps=100, batch_size=1, lr=3e-3, schedule="onecycle",
                      augment=AugmentConfig.disabled(), num_workers=0, log_every=10, max_objs=16)
    frame = make_frame()
    checkpoint = train(config, [frame] * 100, cfg, tmp_path, log=None)

    records = [json.loads(line) for line in (tmp_path / LOG_FILE).read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(10, 101, 10))
    assert records[-1]["loss"] < 0.1 * records[0]["loss"]

    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert saved["meta"]["iter"] == 100 and saved["meta"]["dataset_meta"]["classes"] == list(CLASSES)
    assert ModelConfig.from_dict(saved["meta"]["config"]) == config
    assert saved["meta"]["train_cfg"]["max_steps"] == 100

    found = detect(checkpoint, config, frame)
    confident = found.scores > 0.3
    boxes, labels = found.boxes[confident], found.labels[confident]
    for gt_box, gt_label in zip(GT_BOXES, GT_LABELS):
        dist = torch.linalg.norm(boxes[:, :2] - torch.from_numpy(gt_box[:2]), dim=1)
        match = (dist < 1.0) & (labels == int(gt_label))
        assert match.any(), f"no detection within 1 m of {gt_box[:2]} (label {gt_label}); got {boxes[:, :2]}"


def test_workers_augmentation_and_validation(tiny_config: ModelConfig, tmp_path: Path) -> None:
    cfg = TrainConfig(epochs=2, batch_size=2, num_workers=2, log_every=1, max_objs=16)
    seen = []

    def validate(model, epoch: int) -> dict[str, float]:
        assert not model.training and not torch.is_grad_enabled()
        seen.append(epoch)
        return {"val_metric": float(epoch)}

    checkpoint = train(tiny_config, [make_frame(0), make_frame(1)], cfg, tmp_path, log=None, validate=validate,
                       half_checkpoint=True, meta={"dataset": "hand-made"})
    assert seen == [1, 2]
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert saved["meta"]["epoch"] == 2 and saved["meta"]["iter"] == 2 and saved["meta"]["dataset"] == "hand-made"
    assert all(v.dtype == torch.float16 for v in saved["state_dict"].values() if v.is_floating_point())
    records = [json.loads(line) for line in (tmp_path / LOG_FILE).read_text().splitlines()]
    assert [r.get("val_metric") for r in records] == [None, 1.0, None, 2.0]
    assert (tmp_path / CHECKPOINT_FILE).exists()


def test_bad_inputs_raise(tiny_config: ModelConfig, tmp_path: Path) -> None:
    cfg = TrainConfig(max_steps=1, num_workers=0, batch_size=1)
    with pytest.raises(ConfigError, match="fp16"):
        train(tiny_config, [make_frame()], TrainConfig(amp="fp16"), tmp_path, device="cpu", log=None)
    with pytest.raises(ConfigError, match="lr"):
        train(tiny_config, [make_frame()], TrainConfig(lr=-1.0), tmp_path, log=None)
    with pytest.raises(DatasetError, match="no frames"):
        train(tiny_config, [], cfg, tmp_path, log=None)
    with pytest.raises(DatasetError, match="classes"):
        train(tiny_config, [make_frame(class_names=("a", "b", "c", "d", "e"))], cfg, tmp_path, log=None)
    unlabelled = make_frame()
    unlabelled.gt = None
    with pytest.raises(DatasetError, match="no annotations"):
        train(tiny_config, [unlabelled], cfg, tmp_path, log=None)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("amp", ["off", "bf16", "fp16"])
def test_cuda_training_with_amp(tiny_config: ModelConfig, tmp_path: Path, amp: str) -> None:
    cfg = TrainConfig(epochs=1, max_steps=20, batch_size=2, lr=3e-3, amp=amp, num_workers=2, log_every=10,
                      max_objs=16)
    checkpoint = train(tiny_config, [make_frame(0), make_frame(1)] * 20, cfg, tmp_path, device="cuda", log=None)
    records = [json.loads(line) for line in (tmp_path / LOG_FILE).read_text().splitlines()]
    assert records[-1]["loss"] < records[0]["loss"]
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert all(v.device.type == "cpu" for v in saved["state_dict"].values())
