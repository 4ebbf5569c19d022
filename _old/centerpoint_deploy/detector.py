"""The detector: the dynamic pipeline around any (encoder, head) backend pair.

points -> voxelize -> decorate -> encoder -> scatter -> head -> decode -> NMS -> boxes, every
tensor trimmed to its real size, so that backends can be compared stage by stage
(:meth:`Detector.run_stages`). Pre- and post-processing run in torch on the detector's device;
only the two network parts change with the backend. The fixed-shape, graph-captured pipeline
with the same interface is :class:`~centerpoint_deploy.static_pipeline.StaticPipeline`; build
either with :func:`~centerpoint_deploy.variant.build_detector`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from centerpoint_deploy import contract
from centerpoint_deploy.backends.base import Backend
from centerpoint_deploy.clouds import file_cloud
from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.postprocess import decode_tasks, merge_tasks, postprocess, suppress
from centerpoint_deploy.postprocess.node_params import NodePostprocessParams
from centerpoint_deploy.preprocess import check_points, decorate, scatter_to_bev, voxelize
from centerpoint_deploy.stages import (DECODE, DECORATE, ENCODER, HEAD, NMS, OUTPUT, SCATTER, UPLOAD, VOXELIZE,
                                       BackendOwner, PostProcessor, StageHook, StageOutputs, as_clouds,
                                       count_nonfinite_outputs, no_hook, node_voxelizer, raise_nonfinite_outputs,
                                       task_maps, upload)
from centerpoint_deploy.structures import Detections


class Detector(BackendOwner):
    """CenterPoint inference with shared pre/post-processing.

    Args:
        config: the model.
        encoder: backend of ``pts_voxel_encoder`` (``input_features`` -> ``pillar_features``).
        head: backend of ``pts_backbone_neck_head`` (``spatial_features`` -> six maps per task).
        rot_y_axis_reference: the head emits AWML's y-axis-reference ``dim``/``rot``; undone
            before decoding.
        device: where pre/post-processing run; defaults to the encoder's device.
        postprocess: task maps -> boxes; default mmdet3d's decode + circle NMS per task
            (stages ``decode`` and ``nms``; a given one runs as stage ``decode``).
        voxel_seed: the shuffle seed of ``voxelization.mode == "autoware"`` (:class:`NodeVoxelizer`).
        node_params: the node's post-processing parameters of the bundle it runs (reports' autoware
            view; ``None``: the node's defaults).

    Use as ``with Detector(...) as detector: detections = detector(points)`` (loads on first use otherwise).
    """

    def __init__(self, config: ModelConfig, encoder: Backend, head: Backend, *, rot_y_axis_reference: bool = False,
                 device: torch.device | str | None = None, postprocess: PostProcessor | None = None,
                 voxel_seed: int = 0, node_params: NodePostprocessParams | None = None) -> None:
        self.config, self.encoder, self.head = config, encoder, head
        self.node_params = node_params
        self.rot_y_axis_reference = rot_y_axis_reference
        self.device = torch.device(device) if device is not None else encoder.device
        self.postprocess, self.voxel_seed = postprocess, voxel_seed
        self._node_voxelizer = node_voxelizer(config, voxel_seed)
        self._head_names = contract.head_output_names(len(config.head.tasks))

    def with_config(self, config: ModelConfig, *, voxel_seed: int | None = None) -> "Detector":
        """The same pipeline (backends, post-processor, seed unless given) for another model config."""
        return Detector(config, self.encoder, self.head, rot_y_axis_reference=self.rot_y_axis_reference,
                        device=self.device, postprocess=self.postprocess,
                        voxel_seed=self.voxel_seed if voxel_seed is None else voxel_seed, node_params=self.node_params)

    def __call__(self, points: Tensor | list[Tensor]) -> Detections | list[Detections]:
        """Boxes for ``Tensor[N, D]`` (``D = len(config.points.use_dim)``) or a list of them (one per cloud)."""
        detections = self.run_stages(points).detections
        return detections[0] if isinstance(points, Tensor) else detections

    def detect_with_head_outputs(self, points: Tensor | list[Tensor]) -> tuple[dict[str, Tensor], list[Detections]]:
        """The head outputs and one :class:`Detections` per cloud made from them."""
        run = self.run_stages(points)
        return run.head_outputs, run.detections

    def run_stages(self, points: Tensor | list[Tensor], hook: StageHook = no_hook) -> StageOutputs:
        """The whole pipeline, keeping every intermediate tensor; ``hook(stage)`` after each stage."""
        self.load()
        cfg = self.config
        clouds = as_clouds(points)
        check_points(clouds, cfg)
        clouds = [upload(cloud, self.device) for cloud in clouds]
        hook(UPLOAD)
        voxels = self._node_voxelizer(clouds) if self._node_voxelizer else voxelize(clouds, cfg.voxelization)
        hook(VOXELIZE)
        features = decorate(voxels, cfg)
        hook(DECORATE)
        encoded = self.encoder.infer({contract.ENCODER_INPUT: features.to(self.encoder.device)})
        pillars = encoded[contract.ENCODER_OUTPUT].to(self.device)
        hook(ENCODER)
        # the coords come from voxelize, so the (synchronising) range check is not needed
        bev = scatter_to_bev(pillars, voxels.coords, voxels.batch_size, cfg.bev_shape, check_coords=False,
                             channels_last=self.head.channels_last_input)
        hook(SCATTER)
        head_outputs = self.head.infer({contract.HEAD_INPUT: bev.to(self.head.device)})
        hook(HEAD)
        detections = self._boxes(head_outputs, hook)
        return StageOutputs(voxels, features, pillars, bev, head_outputs, detections)

    def _boxes(self, head_outputs: dict[str, Tensor], hook: StageHook) -> list[Detections]:
        """Decode and NMS (stages ``decode``, ``nms``, ``output``), after refusing non-finite head outputs."""
        maps = self.task_maps(head_outputs)
        raise_nonfinite_outputs(count_nonfinite_outputs(head_outputs, self._head_names).tolist(), self._head_names,
                                self.head.name)
        if self.postprocess is not None:
            detections = self.postprocess(maps)
            for stage in (DECODE, NMS, OUTPUT):
                hook(stage)
            return detections
        decoded = decode_tasks(maps, self.config)
        hook(DECODE)
        keep, converged = suppress(decoded, self.config)
        hook(NMS)
        detections = merge_tasks(decoded, keep, converged, self.config.nms.post_max_size).unpad()
        hook(OUTPUT)
        return detections

    def task_maps(self, head_outputs: dict[str, Tensor]) -> list[dict[str, Tensor]]:
        """A head backend's flat outputs per task on this device, plain mmdet3d convention (a post-processor's input)."""
        return task_maps(head_outputs, self.config, self.rot_y_axis_reference, self.device)

    def detect_from_head_outputs(self, head_outputs: dict[str, Tensor]) -> list[Detections]:
        """Boxes from a head backend's flat outputs (``contract.head_output_names`` keys)."""
        maps = self.task_maps(head_outputs)
        return self.postprocess(maps) if self.postprocess is not None else postprocess(maps, self.config)


def detect_point_files(detector: Detector, paths: Sequence[Path | str], *,
                       keep_time_lag: bool = False, load_dim: int | None = None) -> dict[str, list[dict]]:
    """Run ``detector`` on point files one at a time (batch 1, as Autoware does).

    Each file is read as :func:`~centerpoint_deploy.clouds.file_cloud` reads it (``load_dim``
    floats per point, time lag 0 unless ``keep_time_lag``).

    Returns:
        ``{path: [{"box": [x, y, z, l, w, h, yaw, vx, vy], "score": s, "label": name}, ...]}``
        in the order of ``paths``, boxes by descending score.
    """
    config = detector.config
    return {str(path): detector(file_cloud(path, config, load_dim=load_dim, keep_time_lag=keep_time_lag))
            .to_records(config.class_names) for path in paths}
