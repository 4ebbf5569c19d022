"""Drive the ego through a synthetic road world, scan it, and write T4 scenes.

A scene is ``lead_in_sweeps`` sweeps followed by ``frames`` key frames ``key_frame_interval``
sweeps apart (interval 1: every sweep is a key frame, as in T4; 2: one non-key sweep between
key frames), all at the sensor rate. Ground truth: every agent within ``annotation_range``
of the ego at a key frame, with its true ``num_lidar_pts`` (0 when occluded or out of range).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from centerpoint_deploy.data.geometry import count_points_in_boxes, invert_transform, matrix_yaw, transform_points
from centerpoint_deploy.data.synthetic.lidar import LidarConfig, returns_to_points
from centerpoint_deploy.data.synthetic.raycast import GROUND, cast
from centerpoint_deploy.data.synthetic.shapes import agent_parts
from centerpoint_deploy.data.synthetic.world import AGENT_CLASSES, LANE_WIDTH, World, WorldConfig, build_world
from centerpoint_deploy.data.synthetic.writer import KeyFrameAnnotations, Scan, SceneRecording, write_scene
from centerpoint_deploy.errors import DatasetError
from centerpoint_deploy.progress import Progress, track

#: Time of the first sweep of scene 0 (µs since the epoch); scenes start an hour apart.
BASE_TIMESTAMP = 1_700_000_000_000_000
SCENE_TIME_STEP = 3_600_000_000

#: Ground reflectivity: asphalt, lane paint, sidewalk, verge.
ASPHALT, PAINT, SIDEWALK, VERGE = 12.0, 70.0, 28.0, 18.0


@dataclass(frozen=True)
class SceneTiming:
    """Which sweeps a scene holds: ``lead_in`` sweeps, then ``frames`` key frames ``interval`` sweeps apart."""

    frames: int
    interval: int = 1
    lead_in: int = 1

    def __post_init__(self) -> None:
        if self.frames < 1 or self.interval < 1 or self.lead_in < 0:
            raise DatasetError(f"scene timing frames={self.frames}, key_frame_interval={self.interval}, "
                               f"lead_in_sweeps={self.lead_in} is invalid: need frames >= 1, interval >= 1, lead_in >= 0")

    @property
    def num_sweeps(self) -> int:
        return self.lead_in + (self.frames - 1) * self.interval + 1

    def is_key_frame(self) -> np.ndarray:
        """``[num_sweeps]`` bool."""
        k = np.arange(self.num_sweeps) - self.lead_in
        return (k >= 0) & (k % self.interval == 0)


def ground_reflectivity(road_xy: np.ndarray) -> np.ndarray:
    """Reflectivity of ground points at road-frame ``road_xy [N, 2]``: asphalt with painted lane
    lines (centre line, dashed lane separators, edge lines), sidewalks, verge."""
    x, y = road_xy[:, 0], np.abs(road_xy[:, 1])
    refl = np.where(y < 9.0, ASPHALT, np.where(y < 12.5, SIDEWALK, VERGE))
    solid = (np.abs(y) < 0.1) | (np.abs(y - 2 * LANE_WIDTH) < 0.075)
    dashed = (np.abs(y - LANE_WIDTH) < 0.075) & ((x % 12.0) < 4.0)
    return np.where(solid | dashed, PAINT, refl)


def count_points_in_agent_boxes(points: np.ndarray, boxes: np.ndarray, cell: float = 1.0) -> np.ndarray:
    """``[M]`` points inside each box (faces included), as ``count_points_in_boxes`` counts them,
    testing only the points that fall in grid cells the boxes' bounding squares touch.

    Args:
        points: ``[N, >=3]`` x, y, z (m).
        boxes: ``[M, 7]`` ``[x, y, z, l, w, h, yaw]``, z at the centre.
        cell: grid cell size (m).
    """
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    radius = 0.5 * np.hypot(boxes[:, 3], boxes[:, 4])[:, None]  # the footprint lies within this circle
    lo = (boxes[:, :2] - radius).min(axis=0)
    first = np.floor((boxes[:, :2] - radius - lo) / cell).astype(np.int64)  # [M, 2] cell ranges, inclusive
    last = np.floor((boxes[:, :2] + radius - lo) / cell).astype(np.int64)
    shape = last.max(axis=0) + 1
    corners = np.zeros(shape + 1, dtype=np.int64)  # 2-D difference array of the covered rectangles
    np.add.at(corners, (first[:, 0], first[:, 1]), 1)
    np.add.at(corners, (last[:, 0] + 1, first[:, 1]), -1)
    np.add.at(corners, (first[:, 0], last[:, 1] + 1), -1)
    np.add.at(corners, (last[:, 0] + 1, last[:, 1] + 1), 1)
    covered = corners.cumsum(axis=0).cumsum(axis=1)[:-1, :-1] > 0
    index = np.floor((points[:, :2] - lo) / cell).astype(np.int64)
    on_grid = np.all((index >= 0) & (index < shape), axis=1)
    candidate = np.zeros(points.shape[0], dtype=bool)
    candidate[on_grid] = covered[index[on_grid, 0], index[on_grid, 1]]
    return count_points_in_boxes(points[candidate], boxes)


def simulate_scan(world: World, sensor: LidarConfig, directions: np.ndarray, elevations: np.ndarray, t: float,
                  rng: np.random.Generator, beam_range_bias: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One sweep at time ``t`` (s). Agents are ray-cast as their parts (:mod:`.shapes`); their
    annotated boxes are the tight boxes around the parts. ``directions [beams, columns, 3]`` and
    ``elevations [beams]`` are the unit's rays; ``beam_range_bias [beams]`` (m) its range offsets.

    Returns:
        ``(points [N, 5] float32 sensor frame, ego2global 4x4, agent boxes [A, 7] sensor frame,
        agent visible fraction [A])``.
    """
    ego2road = world.ego_pose_at(t)
    ego2global = world.road2global @ ego2road
    sensor2road = ego2road @ sensor.lidar2ego
    road2sensor = invert_transform(sensor2road)
    sensor_yaw = matrix_yaw(road2sensor[:3, :3])
    road_agents, _ = world.agent_state_at(t)
    agent_boxes = road_agents.copy()
    agent_boxes[:, :3] = transform_points(road2sensor, road_agents[:, :3])
    agent_boxes[:, 6] = road_agents[:, 6] + sensor_yaw
    parts, part_owner, part_shine = agent_parts(agent_boxes, world.agents.shape_index())
    static = world.static.boxes.copy()
    static[:, :3] = transform_points(road2sensor, static[:, :3])
    static[:, 6] = static[:, 6] + sensor_yaw
    num_static = static.shape[0]
    owners = np.concatenate([np.arange(num_static), num_static + part_owner])
    # ground z = grade * x (road frame) seen from the level sensor: z = ground_z + sx x + sy y
    origin = sensor2road[:3, 3]
    hits = cast(directions, elevations, np.concatenate([static, parts]),
                ground_z=world.grade * origin[0] - origin[2], max_range=sensor.max_range, owners=owners,
                ground_slope=(world.grade * sensor2road[0, 0], world.grade * sensor2road[0, 1]))

    flat_dirs = directions.reshape(-1, 3)
    ranges = hits.ranges.reshape(-1)
    surface = hits.surface.reshape(-1)
    reflectivity = np.concatenate([world.static.reflectivity, world.agents.reflectivity[part_owner] * part_shine])
    refl = np.zeros(ranges.shape[0])
    on_box = surface >= 0
    refl[on_box] = reflectivity[surface[on_box]]
    on_ground = surface == GROUND
    ground_road = transform_points(invert_transform(road2sensor), flat_dirs[on_ground] * ranges[on_ground, None])
    refl[on_ground] = ground_reflectivity(ground_road[:, :2])
    bias = 0.0 if beam_range_bias is None else np.repeat(beam_range_bias, directions.shape[1])
    points = returns_to_points(sensor, flat_dirs, ranges, refl, hits.cos_incidence.reshape(-1), rng, bias)

    visible = hits.box_first_hits[num_static:] / np.maximum(hits.box_rays[num_static:], 1)
    return points, ego2global, agent_boxes, visible


def simulate_scene(name: str, world: World, sensor: LidarConfig, timing: SceneTiming, start_time: int,
                   annotation_range: float, rng: np.random.Generator) -> SceneRecording:
    """Scan ``world`` along the ego path and collect the T4 records of one scene."""
    elevations, range_bias = sensor.beam_errors(rng)
    directions = sensor.ray_directions(elevations)
    period_us = 1e6 / sensor.rate_hz
    agents = world.agents
    road_yaw = matrix_yaw(world.road2global[:3, :3])
    attributes = np.array(agents.attributes())
    scans, key_frames = [], []
    for k, is_key in enumerate(timing.is_key_frame().tolist()):
        t = k / sensor.rate_hz
        points, ego2global, sensor_boxes, visible = simulate_scan(world, sensor, directions, elevations, t, rng,
                                                                  range_bias)
        scans.append(Scan(start_time + int(round(k * period_us)), ego2global, points, is_key))
        if not is_key:
            continue
        near = np.flatnonzero(np.hypot(sensor_boxes[:, 0], sensor_boxes[:, 1]) <= annotation_range)
        road_boxes, road_velocity = world.agent_state_at(t)
        global_boxes = road_boxes[near].copy()
        global_boxes[:, :3] = transform_points(world.road2global, road_boxes[near, :3])
        global_boxes[:, 6] = road_boxes[near, 6] + road_yaw
        velocity = np.column_stack([road_velocity[near], np.zeros(near.shape[0])]) @ world.road2global[:3, :3].T
        key_frames.append(KeyFrameAnnotations(
            instances=near, boxes=global_boxes, velocities=velocity,
            num_lidar_pts=count_points_in_agent_boxes(points, sensor_boxes[near]),
            visibility=visible[near], attributes=attributes[near].tolist()))
    categories = [AGENT_CLASSES[c].category for c in agents.class_index.tolist()]
    return SceneRecording(name, "synthetic road scene", sensor.channel, sensor.lidar2ego, scans, key_frames, categories)


def generate_dataset(out_dir: str | Path, num_scenes: int, frames_per_scene: int, seed: int,
                     sensor: LidarConfig = LidarConfig(), world: WorldConfig = WorldConfig(), *,
                     key_frame_interval: int = 1, lead_in_sweeps: int = 1, annotation_range: float = 150.0,
                     write_velocity: bool = True, overwrite: bool = False,
                     progress: Progress | None = None) -> list[Path]:
    """Generate ``num_scenes`` T4 scenes under ``out_dir`` (deterministic for ``seed``).

    Args:
        out_dir: dataset root; scene ``i`` goes to ``out_dir/synth-<seed>-<i>``.
        num_scenes: scenes to write.
        frames_per_scene: key frames per scene.
        seed: all randomness derives from ``(seed, scene index)``.
        sensor: the LiDAR model.
        world: road population.
        key_frame_interval: sweeps per key frame (1 = every sweep annotated).
        lead_in_sweeps: sweeps before the first key frame (previous sweeps for it).
        annotation_range: agents within this distance (m) of the ego get annotations.
        write_velocity: write T4's ``velocity`` field (else readers use centre differences).
        overwrite: replace existing scene folders instead of refusing.
        progress: called ``progress("scenes", done, num_scenes)`` as scenes are written.

    Returns:
        The scene folders, in order.
    """
    if num_scenes < 1:
        raise DatasetError(f"num_scenes = {num_scenes} is invalid: must be >= 1")
    timing = SceneTiming(frames_per_scene, key_frame_interval, lead_in_sweeps)
    duration = (timing.num_sweeps - 1) / sensor.rate_hz
    out = Path(out_dir)
    paths = []
    names = [f"synth-{seed}-{i:03d}" for i in range(num_scenes)]
    existing = [out / name for name in names if (out / name).exists()]
    if existing and not overwrite:  # before any work
        raise DatasetError(f"scene folder {existing[0]} already exists; allow replacing it "
                           "(CLI: --overwrite; Python: overwrite=True)")
    for i in track(range(num_scenes), "synthetic scenes", progress):
        name = names[i]
        if (out / name).exists():
            shutil.rmtree(out / name)
        rng = np.random.default_rng([seed, i])
        world_i = build_world(rng, world, duration, sensor.max_range)
        recording = simulate_scene(name, world_i, sensor, timing, BASE_TIMESTAMP + i * SCENE_TIME_STEP,
                                   annotation_range, rng)
        paths.append(write_scene(out, recording, write_velocity=write_velocity))
    return paths
