"""The detector: one shared pipeline around any (encoder, head) backend pair.

points -> voxelize -> decorate -> encoder -> scatter -> head -> decode -> NMS -> boxes.
Pre- and post-processing run in torch on the detector's device; only the two network parts
change with the backend, so backends can be compared stage by stage
(:meth:`Detector.run_stages`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from centerpoint_deploy import contract
from centerpoint_deploy.backends.base import Backend
from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.data.pointcloud import key_frame_points, read_points
from centerpoint_deploy.errors import BackendError
from centerpoint_deploy.postprocess import postprocess
from centerpoint_deploy.postprocess.rot_reference import undo_rot_y_axis_reference
from centerpoint_deploy.preprocess import prepare_encoder_input, scatter_to_bev
from centerpoint_deploy.structures import Detections, Voxels


@dataclass
class StageOutputs:
    """Every intermediate result of one batch, for verification and debugging.

    Attributes:
        voxels: the pillars (``points [V, P, D]``, ``num_points [V]``, ``coords [V, 4]``).
        features: ``Tensor[V, P, F]`` encoder input (``input_features``).
        pillar_features: ``Tensor[V, 1, C]`` encoder output.
        spatial_features: ``Tensor[B, C, H, W]`` head input.
        head_outputs: the head's flat ``{output name: Tensor[B, ch, h, w]}`` as the backend
            returned it (still in the y-axis-reference convention when the export used it).
        detections: one :class:`Detections` per cloud.
    """

    voxels: Voxels
    features: Tensor
    pillar_features: Tensor
    spatial_features: Tensor
    head_outputs: dict[str, Tensor]
    detections: list[Detections]


class Detector:
    """CenterPoint inference with shared pre/post-processing.

    Args:
        config: the model.
        encoder: backend of ``pts_voxel_encoder`` (``input_features`` -> ``pillar_features``).
        head: backend of ``pts_backbone_neck_head`` (``spatial_features`` -> six maps per task).
        rot_y_axis_reference: the head emits AWML's y-axis-reference ``dim``/``rot``; undone
            before decoding.
        device: where pre/post-processing run; defaults to the encoder's device.

    Use as ``with Detector(...) as detector: detections = detector(points)``; calling it
    outside ``with`` loads the backends on first use.
    """

    def __init__(self, config: ModelConfig, encoder: Backend, head: Backend, *,
                 rot_y_axis_reference: bool = False, device: torch.device | str | None = None) -> None:
        self.config = config
        self.encoder = encoder
        self.head = head
        self.rot_y_axis_reference = rot_y_axis_reference
        self.device = torch.device(device) if device is not None else encoder.device

    # ----- lifecycle -------------------------------------------------------------------
    def load(self) -> "Detector":
        self.encoder.load()
        self.head.load()
        return self

    def close(self) -> None:
        self.encoder.close()
        self.head.close()

    def __enter__(self) -> "Detector":
        return self.load()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- inference -------------------------------------------------------------------
    def __call__(self, points: Tensor | list[Tensor]) -> Detections | list[Detections]:
        """Detect boxes.

        Args:
            points: ``Tensor[N, D]`` or a list of them (``D = len(config.points.use_dim)``).

        Returns:
            :class:`Detections` for a single tensor, else one per cloud.
        """
        detections = self.run_stages(points).detections
        return detections[0] if isinstance(points, Tensor) else detections

    def run_stages(self, points: Tensor | list[Tensor]) -> StageOutputs:
        """Run the whole pipeline and keep every intermediate tensor."""
        self.load()
        clouds = [points] if isinstance(points, Tensor) else list(points)
        clouds = [cloud.to(self.device) for cloud in clouds]
        voxels, features = prepare_encoder_input(clouds, self.config)
        encoded = self.encoder.infer({contract.ENCODER_INPUT: features.to(self.encoder.device)})
        pillar_features = encoded[contract.ENCODER_OUTPUT].to(self.device)
        spatial = scatter_to_bev(pillar_features, voxels.coords, voxels.batch_size, self.config.bev_shape)
        head_outputs = self.head.infer({contract.HEAD_INPUT: spatial.to(self.head.device)})
        return StageOutputs(
            voxels=voxels,
            features=features,
            pillar_features=pillar_features,
            spatial_features=spatial,
            head_outputs=head_outputs,
            detections=self.detect_from_head_outputs(head_outputs),
        )

    def detect_from_head_outputs(self, head_outputs: dict[str, Tensor]) -> list[Detections]:
        """Boxes from a head backend's flat outputs (``contract.head_output_names`` keys).

        Undoes the y-axis-reference convention when the detector was built with it, splits
        the outputs per task and post-processes them on the detector's device.
        """
        num_tasks = len(self.config.head.tasks)
        missing = [name for name in contract.head_output_names(num_tasks) if name not in head_outputs]
        if missing:
            raise BackendError(f"head outputs lack {missing} for {num_tasks} task(s); got {sorted(head_outputs)}")
        on_device = {name: tensor.to(self.device) for name, tensor in head_outputs.items()}
        task_maps = contract.split_tasks(on_device, num_tasks)
        if self.rot_y_axis_reference:
            task_maps = [undo_rot_y_axis_reference(maps) for maps in task_maps]
        return postprocess(task_maps, self.config)


def detect_point_files(detector: Detector, paths: Sequence[Path | str], *,
                       keep_time_lag: bool = False) -> dict[str, list[dict]]:
    """Run ``detector`` on point files one at a time (batch 1, as Autoware does).

    Each file is read with ``config.points.load_dim`` floats per point and reduced to the
    model's columns by :func:`~centerpoint_deploy.data.pointcloud.key_frame_points` (time lag
    0 unless ``keep_time_lag``).

    Returns:
        ``{path: [{"box": [x, y, z, l, w, h, yaw, vx, vy], "score": s, "label": name}, ...]}``
        in the order of ``paths``, boxes by descending score.
    """
    config = detector.config
    results: dict[str, list[dict]] = {}
    for path in paths:
        raw = read_points(path, config.points.load_dim)
        points = torch.from_numpy(key_frame_points(raw, config.points, keep_time_lag=keep_time_lag))
        results[str(path)] = detector(points).to_records(config.class_names)
    return results
