"""Generate -> write T4 -> read back: the reader recovers the generator's truth."""

from __future__ import annotations

import numpy as np
import pytest

from centerpoint_deploy.data import open_dataset
from centerpoint_deploy.data.geometry import count_points_in_boxes, invert_transform, matrix_yaw, transform_points
from centerpoint_deploy.data.synthetic.generate import SceneTiming
from centerpoint_deploy.data.synthetic.world import AGENT_CLASSES, WorldConfig, build_world
from tests.data.conftest import CLASSES, FRAMES, INTERVAL, SEED, SMALL_SENSOR

CLASS_OF_AGENT = [CLASSES.index(c.category.split(".")[-1].replace("adult", "pedestrian")) for c in AGENT_CLASSES]


def truth(scene_index: int, key_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Generator truth in the key frame's LiDAR frame: boxes [M, 9], labels [M]."""
    timing = SceneTiming(FRAMES, INTERVAL, 1)
    duration = (timing.num_sweeps - 1) / SMALL_SENSOR.rate_hz
    world = build_world(np.random.default_rng([SEED, scene_index]), WorldConfig(), duration, SMALL_SENSOR.max_range)
    t = np.flatnonzero(timing.is_key_frame())[key_index] / SMALL_SENSOR.rate_hz
    road2sensor = invert_transform(world.ego_pose_at(t) @ SMALL_SENSOR.lidar2ego)
    boxes, velocity = world.agent_state_at(t)
    centers = transform_points(road2sensor, boxes[:, :3])
    near = np.hypot(centers[:, 0], centers[:, 1]) <= 150.0
    yaw = boxes[:, 6] + matrix_yaw(road2sensor[:3, :3])
    vel = velocity @ road2sensor[:2, :2].T
    out = np.column_stack([centers, boxes[:, 3:6], np.arctan2(np.sin(yaw), np.cos(yaw)), vel])[near]
    return out, np.array(CLASS_OF_AGENT)[world.agents.class_index][near]


@pytest.fixture(scope="module")
def dataset(synth_root):
    return open_dataset(synth_root, class_names=CLASSES, sweeps_num=1)


def test_frames_and_time_lags(dataset):
    assert len(dataset) == 2 * FRAMES
    first, second = dataset[0], dataset[1]
    assert first.scene == "synth-11-000" and first.points.shape[1] == 5
    # frame 0 has the lead-in sweep 0.1 s earlier; later frames the non-key sweep 0.1 s earlier
    np.testing.assert_allclose(np.unique(first.points[:, 4]), [0.0, 0.1], atol=1e-6)
    np.testing.assert_allclose(np.unique(second.points[:, 4]), [0.0, 0.1], atol=1e-6)
    assert second.timestamp - first.timestamp == 200_000


@pytest.mark.parametrize("scene, key", [(0, 0), (0, 3), (1, 2)])
def test_boxes_match_generator_truth(dataset, scene, key):
    frame = dataset[scene * FRAMES + key]
    boxes, labels = truth(scene, key)
    got = frame.gt.boxes.astype(np.float64)
    assert got.shape == boxes.shape and len(got) > 10
    np.testing.assert_array_equal(frame.gt.labels, labels)
    yaw_diff = np.arctan2(np.sin(got[:, 6] - boxes[:, 6]), np.cos(got[:, 6] - boxes[:, 6]))
    np.testing.assert_allclose(yaw_diff, 0.0, atol=1e-4)
    np.testing.assert_allclose(np.delete(got, 6, axis=1), np.delete(boxes, 6, axis=1), atol=1e-4, rtol=0)
    vehicles = labels <= CLASSES.index("bus")
    assert np.all(got[vehicles, 3] > got[vehicles, 4])  # l along the heading, not swapped with w


def test_num_lidar_pts_counts_key_frame_points_in_box(dataset):
    for index in (0, 5):
        frame = dataset[index]
        key_points = frame.points[frame.points[:, 4] == 0]
        inner = count_points_in_boxes(key_points, frame.gt.boxes, margin=-1e-4)
        outer = count_points_in_boxes(key_points, frame.gt.boxes, margin=1e-4)
        assert np.all(inner <= frame.gt.num_lidar_pts) and np.all(frame.gt.num_lidar_pts <= outer)
        assert frame.gt.num_lidar_pts.max() > 50 and (frame.gt.num_lidar_pts == 0).any()


def test_static_pole_overlaps_across_sweeps(dataset, synth_root):
    frame = dataset[2]
    world = build_world(np.random.default_rng([SEED, 0]), WorldConfig(),
                        (SceneTiming(FRAMES, INTERVAL, 1).num_sweeps - 1) / SMALL_SENSOR.rate_hz,
                        SMALL_SENSOR.max_range)
    t = np.flatnonzero(SceneTiming(FRAMES, INTERVAL, 1).is_key_frame())[2] / SMALL_SENSOR.rate_hz
    road2sensor = invert_transform(world.ego_pose_at(t) @ SMALL_SENSOR.lidar2ego)
    poles = world.static.boxes[world.static.boxes[:, 3] == 0.25]
    centers = transform_points(road2sensor, poles[:, :3])
    yaw = matrix_yaw(road2sensor[:3, :3])  # poles are axis-aligned in the road frame
    rotation = np.array([[np.cos(yaw), np.sin(yaw)], [-np.sin(yaw), np.cos(yaw)]])  # sensor -> pole axes
    checked = 0
    for center, height in zip(centers, poles[:, 5]):
        if np.hypot(center[0], center[1]) >= 25:
            continue
        above_ground = frame.points[frame.points[:, 2] > center[2] - 0.5 * height + 0.3]  # pole returns only
        local = (above_ground[:, :2] - center[:2]) @ rotation.T
        near = np.hypot(local[:, 0], local[:, 1]) < 0.4
        key_frame = above_ground[:, 4] == 0
        if (near & key_frame).sum() < 3 or (near & ~key_frame).sum() < 3:
            continue
        checked += 1
        # key-frame and (moved into the key frame) sweep returns both lie on the pole's 0.25 m square
        outside = np.abs(local[near]).max(axis=1) - 0.125
        assert outside.max() < 0.06, f"pole at {center[:2]}: a return lies {outside.max():.3f} m off its surface"
    assert checked >= 2


def test_velocity_fallback_without_velocity_field(tmp_path):
    from centerpoint_deploy.data.synthetic import generate_dataset

    sensor = SMALL_SENSOR
    generate_dataset(tmp_path, 1, 3, SEED, sensor, key_frame_interval=1, write_velocity=False)
    frames = open_dataset(tmp_path, class_names=CLASSES, sweeps_num=0)
    generate_dataset(tmp_path / "v", 1, 3, SEED, sensor, key_frame_interval=1, write_velocity=True)
    with_field = open_dataset(tmp_path / "v", class_names=CLASSES, sweeps_num=0)
    got, want = frames.records[1].gt, with_field.records[1].gt
    straight = np.isin(want.attributes, ["vehicle.moving", "vehicle.parked", "vehicle.stopped", "cycle.with_rider"])
    # straight constant-speed movers: the centre difference is exact; turning walkers are close
    np.testing.assert_allclose(got.boxes[straight, 7:], want.boxes[straight, 7:], atol=1e-3)
    np.testing.assert_allclose(got.boxes[:, 7:], want.boxes[:, 7:], atol=0.02)
