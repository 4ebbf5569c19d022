"""The synthetic world: determinism, ray casting against brute force, sensor layout."""

from __future__ import annotations

import numpy as np
import pytest

from centerpoint_deploy.data.synthetic import LidarConfig, generate_dataset
from centerpoint_deploy.data.synthetic.raycast import GROUND, NOTHING, _slab, cast
from centerpoint_deploy.errors import DatasetError

TINY = LidarConfig(beams=8, columns=90)


def files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = files(generate_dataset(tmp_path / "a", 1, 2, 5, TINY)[0])
    b = files(generate_dataset(tmp_path / "b", 1, 2, 5, TINY)[0])
    c = files(generate_dataset(tmp_path / "c", 1, 2, 6, TINY)[0])
    assert a == b
    assert a.keys() == c.keys() and a != c


def test_existing_scene_needs_overwrite(tmp_path):
    generate_dataset(tmp_path, 1, 1, 5, TINY)
    with pytest.raises(DatasetError, match="already exists"):
        generate_dataset(tmp_path, 1, 1, 5, TINY)
    generate_dataset(tmp_path, 1, 1, 5, TINY, overwrite=True)


def test_ground_range_is_height_over_sine():
    sensor = LidarConfig(beams=16, columns=36, min_range=0.0)
    el = sensor.elevations()
    hits = cast(sensor.ray_directions(), el, np.zeros((0, 7)), ground_z=-2.0, max_range=120.0)
    down = (el < 0) & (-2.0 / np.sin(np.minimum(el, -1e-9)) <= 120.0)
    np.testing.assert_allclose(hits.ranges[down], np.broadcast_to((-2.0 / np.sin(el[down]))[:, None], (down.sum(), 36)))
    assert np.all(hits.surface[down] == GROUND) and np.all(hits.surface[~down] == NOTHING)


def test_culled_cast_matches_brute_force():
    sensor = LidarConfig(beams=32, columns=720)
    rng = np.random.default_rng(0)
    n = 40
    boxes = np.column_stack([rng.uniform(-60, 60, (n, 2)), rng.uniform(-1.5, 2.0, n), rng.uniform(0.3, 12, (n, 3)),
                             rng.uniform(-np.pi, np.pi, n)])
    boxes[0] = [0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.0]  # the sensor inside a box: never hit from inside
    boxes[1] = [3.0, 0.5, 0.0, 0.6, 30.0, 4.0, 0.2]  # a long wall next to the sensor
    directions = sensor.ray_directions()
    hits = cast(directions, sensor.elevations(), boxes, ground_z=-1.9, max_range=120.0)
    rays = directions.reshape(-1, 3)
    best, best_box = np.full(len(rays), np.inf), np.full(len(rays), NOTHING)
    for b, (x, y, z, l, w, h, yaw) in enumerate(boxes):  # oracle: every ray against every box
        c, s = np.cos(yaw), np.sin(yaw)
        d = np.column_stack([rays[:, 0] * c + rays[:, 1] * s, -rays[:, 0] * s + rays[:, 1] * c, rays[:, 2]])
        origin = np.broadcast_to([-(x * c + y * s), -(-x * s + y * c), -z], d.shape)
        t, _ = _slab(d, origin, np.broadcast_to([l / 2, w / 2, h / 2], d.shape))
        closer = t < np.minimum(best, 120.0)
        best[closer], best_box[closer] = t[closer], b
    with np.errstate(divide="ignore"):
        ground = np.where(rays[:, 2] < 0, -1.9 / rays[:, 2], np.inf)
    on_ground = (ground < best) & (ground <= 120.0)
    best[on_ground], best_box[on_ground] = ground[on_ground], GROUND
    np.testing.assert_array_equal(hits.surface.reshape(-1), best_box)
    np.testing.assert_allclose(hits.ranges.reshape(-1), best)
    assert (best_box == 1).sum() > 1000 and not (best_box == 0).any()


def test_elevations_ascending_and_packed_near_horizon():
    el = np.rad2deg(LidarConfig().elevations())
    assert len(el) == 64 and np.isclose(el[0], -25.0) and np.isclose(el[-1], 15.0) and np.all(np.diff(el) > 0)
    gaps = np.diff(el)
    assert gaps[np.argmin(np.abs(el[:-1]))] < 0.3 < gaps[0]


@pytest.mark.parametrize("kwargs, message", [
    (dict(beams=1), "beams=1"), (dict(dropout=1.0), "dropout=1.0"),
    (dict(min_range=5.0, max_range=4.0), "min_range=5.0, max_range=4.0"),
])
def test_sensor_validation(kwargs, message):
    with pytest.raises(DatasetError, match=message):
        LidarConfig(**kwargs)
