"""Synthetic realism: asymmetric agent shapes, per-object ray counts, sensor artefacts, clutter."""

from __future__ import annotations

import numpy as np
import pytest

from centerpoint_deploy.data.geometry import count_points_in_boxes, make_transform, yaw_to_quaternion
from centerpoint_deploy.data.synthetic import LidarConfig, WorldConfig
from centerpoint_deploy.data.synthetic.generate import count_points_in_agent_boxes, simulate_scan
from centerpoint_deploy.data.synthetic.lidar import returns_to_points
from centerpoint_deploy.data.synthetic.raycast import cast
from centerpoint_deploy.data.synthetic.shapes import CAR_SHAPE, SHAPES, agent_parts, shape_extent
from centerpoint_deploy.data.synthetic.world import (AGENT_CLASSES, BICYCLE, CAR, Agents, EgoPath, StaticScene, World,
                                                     build_world)
from centerpoint_deploy.errors import DatasetError

SENSOR = LidarConfig(beams=64, columns=1800, dropout=0.0, dark_dropout=0.0, ghost_rate=0.0)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.name)
def test_parts_span_exactly_the_box(shape):
    np.testing.assert_array_equal(shape_extent(shape), [-0.5, 0.5, -0.5, 0.5, 0.0, 1.0])
    assert len(shape.shine) == len(shape.parts)


def test_car_parts_placed_in_the_agents_frame():
    box = np.array([[10.0, 5.0, 0.8, 4.0, 2.0, 1.6, np.pi / 2]])  # heading +y
    parts, owner, shine = agent_parts(box, np.array([CAR_SHAPE]))
    np.testing.assert_array_equal(owner, [0, 0])
    np.testing.assert_allclose(shine, [1.0, 0.35])
    # body: full length and width, bottom 0.55 of the height; cabin: x in [-0.38, 0.12] l -> centre 0.52 m
    # behind the centre (-y here), width 0.88 w, top 0.45 h
    np.testing.assert_allclose(parts[0], [10.0, 5.0, 0.44, 4.0, 2.0, 0.88, np.pi / 2], atol=1e-12)
    np.testing.assert_allclose(parts[1], [10.0, 4.48, 1.24, 2.0, 1.76, 0.72, np.pi / 2], atol=1e-12)


def one_agent_world(class_index: int, y: float, yaw: float, speed: float) -> World:
    """The ego at the road origin (not moving), one agent ahead-left at x = 0.9 + 0 m, no static scene."""
    size = np.array([AGENT_CLASSES[class_index].mean_size])
    agents = Agents(np.array([class_index]), size, np.array([[0.9, y]]), np.array([yaw]), np.array([speed]),
                    np.zeros(1), np.array([60.0]))
    ego = EgoPath(x0=0.0, speed=0.0, weave_amplitude=0.0, weave_period=5.0, weave_phase=0.0)  # at (0, -1.75)
    return World(make_transform(yaw_to_quaternion(0.0), [0.0, 0.0, 0.0]), StaticScene(np.zeros((0, 7)), np.zeros(0)),
                 agents, ego)


@pytest.mark.parametrize("yaw", [0.0, np.pi])
def test_car_heading_observable_from_its_points(yaw):
    """A car seen side-on: the returns above its body (the cabin) sit behind the box centre."""
    world = one_agent_world(CAR, y=-1.75 + 8.0, yaw=yaw, speed=0.0)
    directions, elevations = SENSOR.ray_directions(), SENSOR.elevations()
    points, _, boxes, visible = simulate_scan(world, SENSOR, directions, elevations, 0.0, np.random.default_rng(0))
    box = boxes[0]
    offset = points[:, :3] - box[:3]
    along = offset[:, 0] * np.cos(box[6]) + offset[:, 1] * np.sin(box[6])  # + = forward
    across = -offset[:, 0] * np.sin(box[6]) + offset[:, 1] * np.cos(box[6])
    inside = (np.abs(along) <= 0.5 * box[3]) & (np.abs(across) <= 0.5 * box[4]) & (np.abs(offset[:, 2]) <= 0.5 * box[5])
    upper = along[inside & (offset[:, 2] > 0.1 * box[5])]  # above 0.6 of the height: the cabin only
    assert len(upper) > 30 and inside.sum() > 200
    # cabin x in [-0.38, 0.12] l: its returns centre near -0.13 l = -0.585 m
    assert -0.9 < upper.mean() < -0.35
    assert visible[0] == pytest.approx(1.0)


def test_parked_bicycles_have_no_rider_and_are_lower():
    world = build_world(np.random.default_rng(1), WorldConfig(), 2.0, 60.0)
    agents = world.agents
    bicycles = agents.class_index == BICYCLE
    parked, riding = bicycles & (agents.speed == 0), bicycles & (agents.speed > 0)
    assert parked.sum() > 3 and riding.sum() > 1
    attributes = np.array(agents.attributes())
    assert set(attributes[parked]) == {"cycle.without_rider"} and set(attributes[riding]) == {"cycle.with_rider"}
    assert agents.sizes[parked, 2].max() < 1.35 < agents.sizes[riding, 2].min()
    assert set(agents.shape_index()[parked]) != set(agents.shape_index()[riding])


def test_ray_counted_once_per_object_of_several_parts():
    sensor = LidarConfig(beams=16, columns=360)
    front = [10.0, 0.0, 0.0, 1.0, 2.0, 1.0, 0.0]
    behind = [12.0, 0.0, 0.0, 1.0, 2.0, 1.0, 0.0]  # same bearing window, hidden behind `front`
    boxes = np.array([front, behind])
    args = (sensor.ray_directions(), sensor.elevations(), boxes)
    separate = cast(*args, ground_z=-1.9, max_range=120.0)
    merged = cast(*args, ground_z=-1.9, max_range=120.0, owners=np.array([0, 0]))
    assert separate.box_rays[0] > 0 and separate.box_first_hits[1] == 0
    np.testing.assert_array_equal(merged.box_rays, [separate.box_rays[0]])  # the rays through `front` pass `behind`
    np.testing.assert_array_equal(merged.box_first_hits, [separate.box_first_hits[0]])


def test_ghost_returns_fill_empty_rays_within_range():
    sensor = LidarConfig(dropout=0.0, dark_dropout=0.0, ghost_rate=0.25, range_noise_std=0.0, dark_range_noise_std=0.0)
    count = 20000
    directions = np.tile([[1.0, 0.0, 0.0]], (count, 1))
    points = returns_to_points(sensor, directions, np.full(count, np.inf), np.zeros(count), np.zeros(count),
                               np.random.default_rng(0))
    assert 0.23 * count < len(points) < 0.27 * count
    assert points[:, 0].min() >= sensor.min_range and points[:, 0].max() <= sensor.max_range


def test_dark_surfaces_are_noisier_and_sparser():
    sensor = LidarConfig(dropout=0.05, dark_dropout=0.2, dark_threshold=25.0, range_noise_std=0.02,
                         dark_range_noise_std=0.04, ghost_rate=0.0)
    count = 40000
    directions = np.tile([[1.0, 0.0, 0.0]], (count, 1))
    ranges, cos = np.full(count, 20.0), np.ones(count)
    rng = np.random.default_rng(0)
    bright = returns_to_points(sensor, directions, ranges, np.full(count, 200.0), cos, rng)
    dark = returns_to_points(sensor, directions, ranges, np.zeros(count), cos, rng)  # darkness 1
    assert len(bright) / count == pytest.approx(0.95, abs=0.01) and len(dark) / count == pytest.approx(0.75, abs=0.01)
    assert np.std(bright[:, 0]) == pytest.approx(0.02, rel=0.05) and np.std(dark[:, 0]) == pytest.approx(0.06, rel=0.05)


def test_grid_prefiltered_count_matches_brute_force():
    rng = np.random.default_rng(0)
    boxes = np.column_stack([rng.uniform(-30, 30, (40, 2)), rng.uniform(-1, 1, 40), rng.uniform(0.5, 12, (40, 3)),
                             rng.uniform(-np.pi, np.pi, 40)])
    points = np.column_stack([rng.uniform(-40, 40, (20000, 2)), rng.uniform(-3, 3, 20000)])
    # the far corner of every box's footprint, at its top: a point on the faces, inside (faces included)
    half_l, half_w, cos, sin = 0.5 * boxes[:, 3], 0.5 * boxes[:, 4], np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    corners = np.column_stack([boxes[:, 0] + half_l * cos - half_w * sin, boxes[:, 1] + half_l * sin + half_w * cos,
                               boxes[:, 2] + 0.5 * boxes[:, 5]])
    points = np.concatenate([points, corners])
    np.testing.assert_array_equal(count_points_in_agent_boxes(points, boxes), count_points_in_boxes(points, boxes))
    assert count_points_in_agent_boxes(points, np.zeros((0, 7))).shape == (0,)


def test_clutter_trees_and_curb_parking_present():
    world = build_world(np.random.default_rng(2), WorldConfig(), 2.0, 60.0)
    static = world.static.boxes
    canopies = static[static[:, 2] - 0.5 * static[:, 5] >= 4.3]  # boxes floating above the ground
    assert len(canopies) >= 4
    parked_cars = (world.agents.class_index == CAR) & (world.agents.speed == 0)
    lateral = np.abs(world.agents.start[parked_cars, 1])
    assert (lateral > 8.9).any() and (lateral < 8.8).any()  # some half on the sidewalk, some on the road


@pytest.mark.parametrize("kwargs, message", [
    (dict(dropout=0.5, dark_dropout=0.6), "dropout=0.5, dark_dropout=0.6"), (dict(ghost_rate=-0.1), "ghost_rate=-0.1"),
    (dict(dark_threshold=0.0), "dark_threshold=0.0"), (dict(intensity_noise=-1.0), "intensity_noise=-1.0"),
])
def test_artefact_validation(kwargs, message):
    with pytest.raises(DatasetError, match=message):
        LidarConfig(**kwargs)
