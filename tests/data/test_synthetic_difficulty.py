"""Harder synthetic world: sloped ground, beam calibration errors, pedestrian groups, street furniture."""

from __future__ import annotations

import numpy as np
import pytest

from centerpoint_deploy.data.geometry import make_transform, transform_points, yaw_to_quaternion
from centerpoint_deploy.data.synthetic import LidarConfig, WorldConfig
from centerpoint_deploy.data.synthetic.generate import simulate_scan
from centerpoint_deploy.data.synthetic.raycast import GROUND, cast
from centerpoint_deploy.data.synthetic.world import CAR, PEDESTRIAN, Agents, EgoPath, StaticScene, World, build_world
from centerpoint_deploy.errors import DatasetError

EXACT = LidarConfig(beams=32, columns=720, dropout=0.0, dark_dropout=0.0, ghost_rate=0.0, range_noise_std=0.0,
                    dark_range_noise_std=0.0, beam_elevation_std_deg=0.0, beam_range_bias_std=0.0)


def test_sloped_ground_hit_distance():
    # one horizontal ray along +x; ground z = -2 + 0.05 x reaches the ray's height at x = 40
    directions = np.array([[[1.0, 0.0, 0.0]]])
    hits = cast(directions, np.zeros(1), np.zeros((0, 7)), ground_z=-2.0, max_range=120.0, ground_slope=(0.05, 0.0))
    assert hits.surface[0, 0] == GROUND
    assert hits.ranges[0, 0] == pytest.approx(40.0)
    assert hits.cos_incidence[0, 0] == pytest.approx(0.05 / np.hypot(0.05, 1.0))
    flat = cast(directions, np.zeros(1), np.zeros((0, 7)), ground_z=-2.0, max_range=120.0)
    assert np.isinf(flat.ranges[0, 0])  # a level ray never meets flat ground


def one_car_world(grade: float, ego_x: float) -> World:
    """A parked car 15 m ahead of an ego standing at road x = ``ego_x``; ground ``z = grade * x``."""
    agents = Agents(np.array([CAR]), np.array([[4.5, 1.85, 1.6]]), np.array([[ego_x + 15.0, -1.75]]), np.zeros(1),
                    np.zeros(1), np.zeros(1), np.array([60.0]))
    ego = EgoPath(x0=ego_x, speed=0.0, weave_amplitude=0.0, weave_period=5.0, weave_phase=0.0)
    return World(make_transform(yaw_to_quaternion(0.3), [1.0, 2.0, 3.0]), StaticScene(np.zeros((0, 7)), np.zeros(0)),
                 agents, ego, grade)


def test_ground_returns_lie_on_the_graded_road_and_objects_stand_on_it():
    grade, ego_x = 0.03, 50.0
    world = one_car_world(grade, ego_x)
    points, ego2global, boxes, _ = simulate_scan(world, EXACT, EXACT.ray_directions(), EXACT.elevations(), 0.0,
                                                 np.random.default_rng(0))
    ego2road = world.ego_pose_at(0.0)
    assert ego2road[2, 3] == pytest.approx(grade * ego_x)  # the ego stands on the road, level
    np.testing.assert_allclose(ego2global, world.road2global @ ego2road)
    road = transform_points(ego2road @ EXACT.lidar2ego, points[:, :3].astype(np.float64))
    car = np.abs(road[:, 0] - (ego_x + 15.0)) <= 2.25 + 1e-3
    ground = road[~car]
    assert len(ground) > 10000
    np.testing.assert_allclose(ground[:, 2], grade * ground[:, 0], atol=2e-4)  # float32 points
    # the car's box bottom is the ground under its centre: 15 m ahead of the ego, 0.45 m higher,
    # so 1.9 - 0.45 = 1.45 m below the sensor
    road_box, _ = world.agent_state_at(0.0)
    assert road_box[0, 2] - 0.8 == pytest.approx(grade * (ego_x + 15.0))
    assert boxes[0, 2] - 0.8 == pytest.approx(-1.45)


def test_beam_errors_move_each_beam_a_little():
    sensor = LidarConfig(beam_elevation_std_deg=0.05, beam_range_bias_std=0.02)
    elevations, bias = sensor.beam_errors(np.random.default_rng(0))
    offsets = np.rad2deg(elevations - sensor.elevations())
    assert np.all(np.diff(elevations) > 0) and bias.shape == (64,)
    assert 0.0 < np.abs(offsets).max() < 0.3 and 0.005 < np.std(bias) < 0.04
    nominal, zero = EXACT.beam_errors(np.random.default_rng(0))
    np.testing.assert_array_equal(nominal, EXACT.elevations())
    np.testing.assert_array_equal(zero, np.zeros(32))


def test_pedestrians_walk_in_groups_and_furniture_lines_the_curb():
    world = build_world(np.random.default_rng(3), WorldConfig(), 2.0, 60.0)
    agents = world.agents
    walkers = (agents.class_index == PEDESTRIAN) & (agents.speed > 0)
    _, members = np.unique(agents.speed[walkers], return_counts=True)  # a group shares one speed
    assert (members >= 2).sum() >= 5 and members.max() <= 4
    static = world.static.boxes
    furniture = (np.abs(np.abs(static[:, 1]) - 10.0) < 0.15) & (static[:, 5] < 2.7)
    assert furniture.sum() >= 10
    ground_at = world.grade * static[furniture, 0]  # furniture stands on the graded ground
    assert np.all(static[furniture, 2] - 0.5 * static[furniture, 5] >= ground_at - 1e-9)
    parked = (agents.speed == 0) & (agents.class_index == CAR)
    angled = np.abs(np.angle(np.exp(1j * 2 * agents.yaw0[parked]))) / 2  # off the curb line, nose in or out
    assert (angled > 0.14).sum() >= 2 and (angled < 0.05).sum() >= 10


@pytest.mark.parametrize("kwargs, message", [
    (dict(pedestrian_group_mean=0.5), "pedestrian_group_mean=0.5"), (dict(max_grade=0.5), "max_grade=0.5"),
])
def test_world_validation(kwargs, message):
    with pytest.raises(DatasetError, match=message):
        WorldConfig(**kwargs)
