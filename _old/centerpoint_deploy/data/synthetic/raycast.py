"""Vectorized first-hit ray casting against upright oriented boxes and a (flat or gently sloped) ground plane.

Rays form a regular (beam, column) grid from the sensor origin. Each box is first reduced to
the window of beams and columns its footprint can cover (bearing of its footprint corners,
elevation of its top/bottom edges at its nearest/farthest horizontal distance); only the
rays in that window are slab-tested against it. All (ray, box) candidate pairs of a scan are
generated and tested at once, in chunks, then reduced to the nearest hit per ray.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from centerpoint_deploy.data.geometry import wrap_angle

#: ``surface`` value of a ray that hit the ground plane / nothing.
GROUND = -1
NOTHING = -2

_ANGLE_EPS = 1e-7
_CHUNK_PAIRS = 1 << 21


@dataclass
class RayHits:
    """First hits of a ray grid.

    Attributes:
        ranges: ``[beams, columns]`` distance to the first hit (m), inf where nothing is hit.
        surface: ``[beams, columns]`` int64, index of the hit box, :data:`GROUND` or :data:`NOTHING`.
        cos_incidence: ``[beams, columns]`` |cos| between the ray and the hit surface's normal.
        box_rays: ``[O]`` rays whose line of sight passes through each object (a box, or the
            boxes one owner groups), occluded or not; each ray counted once per object.
        box_first_hits: ``[O]`` rays for which each object is the first hit.
    """

    ranges: np.ndarray
    surface: np.ndarray
    cos_incidence: np.ndarray
    box_rays: np.ndarray
    box_first_hits: np.ndarray


def ray_windows(boxes: np.ndarray, elevations: np.ndarray, columns: int, max_range: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Beam/column windows that may see each box.

    Args:
        boxes: ``[B, 7]`` ``[x, y, z, l, w, h, yaw]`` in the sensor frame (z up, centre z).
        elevations: ``[beams]`` ascending beam elevations (rad).
        columns: azimuth columns; column c looks at ``2 pi c / columns``.
        max_range: boxes farther than this (m) get empty windows.

    Returns:
        ``(first_beam, num_beams, first_column, num_columns)``, each ``[B]`` int64; columns wrap
        modulo ``columns``.
    """
    step = 2 * np.pi / columns
    cos, sin = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    half = 0.5 * boxes[:, 3:5]
    # sensor origin in each box's frame (xy)
    origin = np.column_stack([-(boxes[:, 0] * cos + boxes[:, 1] * sin), -(-boxes[:, 0] * sin + boxes[:, 1] * cos)])
    inside = np.all(np.abs(origin) <= half, axis=1)
    d_min = np.linalg.norm(np.maximum(np.abs(origin) - half, 0.0), axis=1)
    signs = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], dtype=np.float64)
    local = signs[None] * half[:, None, :]  # [B, 4, 2]
    corners_x = boxes[:, None, 0] + local[..., 0] * cos[:, None] - local[..., 1] * sin[:, None]
    corners_y = boxes[:, None, 1] + local[..., 0] * sin[:, None] + local[..., 1] * cos[:, None]
    d_max = np.max(np.hypot(corners_x, corners_y), axis=1)
    center_az = np.arctan2(boxes[:, 1], boxes[:, 0])
    relative = wrap_angle(np.arctan2(corners_y, corners_x) - center_az[:, None])
    az_lo = center_az + relative.min(axis=1)
    az_hi = center_az + relative.max(axis=1)
    first_col = np.ceil((az_lo - _ANGLE_EPS) / step).astype(np.int64)
    num_cols = np.floor((az_hi + _ANGLE_EPS) / step).astype(np.int64) - first_col + 1
    first_col = np.where(inside, 0, first_col % columns)
    num_cols = np.where(inside, columns, np.clip(num_cols, 0, columns))

    z_bot = boxes[:, 2] - 0.5 * boxes[:, 5]
    z_top = boxes[:, 2] + 0.5 * boxes[:, 5]
    el_hi = np.arctan2(z_top, np.where(z_top > 0, d_min, d_max))
    el_lo = np.arctan2(z_bot, np.where(z_bot < 0, d_min, d_max))
    first_beam = np.searchsorted(elevations, el_lo - _ANGLE_EPS, side="left")
    num_beams = np.searchsorted(elevations, el_hi + _ANGLE_EPS, side="right") - first_beam
    nearest = np.hypot(d_min, np.maximum(np.maximum(z_bot, -z_top), 0.0))
    num_beams = np.where(nearest > max_range, 0, num_beams)
    return first_beam.astype(np.int64), num_beams.astype(np.int64), first_col, num_cols


def _slab(directions: np.ndarray, origin: np.ndarray, half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ray/box slab test in the boxes' frames.

    Args:
        directions: ``[P, 3]`` ray directions in the box frame.
        origin: ``[P, 3]`` ray origins in the box frame.
        half: ``[P, 3]`` half sizes.

    Returns:
        ``(t_enter [P], |cos| of the entered face's normal [P])``; ``t_enter`` is NaN where the
        ray misses or starts inside the box.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / directions
        t1 = (-half - origin) * inv
        t2 = (half - origin) * inv
    t_near_axes = np.minimum(t1, t2)
    t_near = t_near_axes.max(axis=1)
    t_far = np.maximum(t1, t2).min(axis=1)
    hit = (t_near <= t_far) & (t_near > 0)
    axis = t_near_axes.argmax(axis=1)
    cos = np.abs(np.take_along_axis(directions, axis[:, None], axis=1)[:, 0])
    return np.where(hit, t_near, np.nan), cos


def cast(directions: np.ndarray, elevations: np.ndarray, boxes: np.ndarray, ground_z: float,
         max_range: float, owners: np.ndarray | None = None, ground_slope: tuple[float, float] = (0.0, 0.0)
         ) -> RayHits:
    """First hit of every ray of a (beam, column) grid.

    Args:
        directions: ``[beams, columns, 3]`` unit rays from the sensor origin, sensor frame.
        elevations: ``[beams]`` ascending elevation of each beam (rad), matching ``directions``.
        boxes: ``[B, 7]`` ``[x, y, z, l, w, h, yaw]`` upright boxes in the sensor frame.
        ground_z: height of the ground plane below the sensor origin, in the sensor frame (m, negative).
        max_range: hits beyond this distance (m) are ignored.
        owners: ``[B]`` int64 object of each box (parts of one object share it), objects
            numbered from 0; None: every box is its own object.
        ground_slope: ``(sx, sy)``: the ground plane is ``z = ground_z + sx x + sy y`` (sensor frame).

    Returns:
        :class:`RayHits`.
    """
    beams, columns = directions.shape[:2]
    first_beam, num_beams, first_col, num_cols = ray_windows(boxes, elevations, columns, max_range)
    counts = num_beams * num_cols
    total = int(counts.sum())
    box_of_pair = np.repeat(np.arange(boxes.shape[0]), counts)
    local = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    cos_yaw, sin_yaw = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    box_origin = np.column_stack([-(boxes[:, 0] * cos_yaw + boxes[:, 1] * sin_yaw),
                                  -(-boxes[:, 0] * sin_yaw + boxes[:, 1] * cos_yaw), -boxes[:, 2]])
    flat_dirs = directions.reshape(-1, 3)
    ray_of_pair = np.empty(total, dtype=np.int64)
    t_pair = np.empty(total)
    cos_pair = np.empty(total)
    for start in range(0, total, _CHUNK_PAIRS):  # bounded memory; each chunk is one vectorized test
        sl = slice(start, min(start + _CHUNK_PAIRS, total))
        box = box_of_pair[sl]
        beam = first_beam[box] + local[sl] // num_cols[box]
        col = (first_col[box] + local[sl] % num_cols[box]) % columns
        ray = beam * columns + col
        d = flat_dirs[ray]
        c, s = cos_yaw[box], sin_yaw[box]
        d_box = np.column_stack([d[:, 0] * c + d[:, 1] * s, -d[:, 0] * s + d[:, 1] * c, d[:, 2]])
        t_pair[sl], cos_pair[sl] = _slab(d_box, box_origin[box], 0.5 * boxes[box, 3:6])
        ray_of_pair[sl] = ray
    hit = np.flatnonzero(t_pair <= max_range)  # NaN compares False
    ranges = np.full(beams * columns, np.inf)
    np.minimum.at(ranges, ray_of_pair[hit], t_pair[hit])
    first = hit[t_pair[hit] == ranges[ray_of_pair[hit]]]
    surface = np.full(beams * columns, NOTHING, dtype=np.int64)
    cos_incidence = np.zeros(beams * columns)
    surface[ray_of_pair[first]] = box_of_pair[first]
    cos_incidence[ray_of_pair[first]] = cos_pair[first]

    normal = np.array([-ground_slope[0], -ground_slope[1], 1.0])
    normal /= np.linalg.norm(normal)
    dz = flat_dirs @ normal  # ray's climb towards the plane's upward normal
    with np.errstate(divide="ignore"):
        t_ground = np.where(dz < 0, ground_z * normal[2] / dz, np.inf)
    ground = (t_ground < ranges) & (t_ground <= max_range)
    ranges[ground] = t_ground[ground]
    surface[ground] = GROUND
    cos_incidence[ground] = -dz[ground]

    if owners is None:
        num_objects = boxes.shape[0]
        box_rays = np.bincount(box_of_pair[hit], minlength=num_objects)
        first_owner = surface[surface >= 0]
    else:
        num_objects = int(owners.max()) + 1 if owners.shape[0] else 0
        pair_owner = owners[box_of_pair[hit]]
        shared = (np.bincount(owners, minlength=num_objects) > 1)[pair_owner]  # only these can repeat a ray
        owner_ray = np.unique(pair_owner[shared] * (beams * columns) + ray_of_pair[hit][shared])
        box_rays = (np.bincount(pair_owner[~shared], minlength=num_objects)
                    + np.bincount(owner_ray // (beams * columns), minlength=num_objects))
        first_owner = owners[surface[surface >= 0]]
    box_first_hits = np.bincount(first_owner, minlength=num_objects)
    shape = (beams, columns)
    return RayHits(ranges.reshape(shape), surface.reshape(shape), cos_incidence.reshape(shape), box_rays, box_first_hits)
