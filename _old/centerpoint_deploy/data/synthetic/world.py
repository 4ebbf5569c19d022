"""A straight urban road: static structures, traffic agents and the ego path.

Everything is laid out in a *road frame* (x along the road, y to the left, z up, ground at
z = 0) that ``road2global`` places somewhere in the global frame. Lanes (3.5 m) run at
``y = -5.25, -1.75`` (towards +x, the ego in ``-1.75``) and ``y = 1.75, 5.25`` (towards -x);
bicycles ride at ``|y| = 7.2``, cars park at ``|y| = 8.6`` (some with two wheels on the
curb, ``|y| = 9.2``; some parked at an angle), poles and trees stand at the curb ``|y| = 9.6``,
pedestrian-sized street furniture (bollards, bins, sign posts, standing figures) at ``|y| = 10``,
pedestrians walk and stand, alone or in groups of up to four, on the sidewalks
``10.2 <= |y| <= 12``, bicycles are parked along the walls at ``|y| = 12.3``,
clutter (bushes, bins) and hedges sit at ``12.6 <= |y| <= 13.8`` and buildings start at ``|y| >= 14``.

The ground rises or falls along the road with a constant grade per scene (``z = grade * x``);
the ego's poses stay level (yaw only, as T4 writes them), so the sensor sees the ground tilt.
Agents move with constant speed and constant yaw rate (straight for vehicles and bicycles,
gently turning for walking pedestrians); vehicles in one lane share one speed, so they never
run into each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from centerpoint_deploy.data.geometry import make_transform, yaw_to_quaternion
from centerpoint_deploy.errors import DatasetError
from centerpoint_deploy.data.synthetic.shapes import (BUS_SHAPE, CAR_SHAPE, PARKED_BICYCLE_SHAPE,
                                                      RIDDEN_BICYCLE_SHAPE, STANDER_SHAPE, TRUCK_SHAPE, WALKER_SHAPE)


@dataclass(frozen=True)
class AgentClass:
    """One annotated category: size distribution, look, attributes.

    Attributes:
        category: T4 category name.
        mean_size, size_std: l, w, h (m), Gaussian, clipped at 70 % of the mean.
        reflectivity: uniform range of the agent's reflectivity (0..255 scale).
        moving_attribute, static_attribute: attribute when moving / not.
        moving_shape, static_shape: index into :data:`~.shapes.SHAPES` when moving / not.
        static_height_scale: height factor when not moving (a bicycle without its rider is lower).
    """

    category: str
    mean_size: tuple[float, float, float]
    size_std: tuple[float, float, float]
    reflectivity: tuple[float, float]
    moving_attribute: str
    static_attribute: str
    moving_shape: int
    static_shape: int
    static_height_scale: float = 1.0


AGENT_CLASSES: tuple[AgentClass, ...] = (
    AgentClass("vehicle.car", (4.5, 1.85, 1.6), (0.6, 0.15, 0.25), (6, 90), "vehicle.moving", "vehicle.parked",
               CAR_SHAPE, CAR_SHAPE),
    AgentClass("vehicle.truck", (8.0, 2.5, 3.2), (1.8, 0.2, 0.4), (15, 80), "vehicle.moving", "vehicle.parked",
               TRUCK_SHAPE, TRUCK_SHAPE),
    AgentClass("vehicle.bus", (11.0, 2.9, 3.3), (1.2, 0.1, 0.2), (15, 80), "vehicle.moving", "vehicle.stopped",
               BUS_SHAPE, BUS_SHAPE),
    AgentClass("vehicle.bicycle", (1.8, 0.6, 1.7), (0.15, 0.08, 0.12), (15, 60), "cycle.with_rider",
               "cycle.without_rider", RIDDEN_BICYCLE_SHAPE, PARKED_BICYCLE_SHAPE, static_height_scale=0.62),
    AgentClass("pedestrian.adult", (0.65, 0.6, 1.7), (0.12, 0.1, 0.17), (6, 30), "pedestrian.moving",
               "pedestrian.standing", WALKER_SHAPE, STANDER_SHAPE),
)
CAR, TRUCK, BUS, BICYCLE, PEDESTRIAN = range(5)

LANE_WIDTH = 3.5
EGO_LANE_Y = -1.75
LANES = ((-5.25, 1), (-1.75, 1), (1.75, -1), (5.25, -1))  # (y, direction of travel along x)


@dataclass(frozen=True)
class WorldConfig:
    """How busy the road is. Densities are per 100 m of road (per lane or per side).

    Attributes:
        ego_speed: range of the ego's speed (m/s).
        traffic_per_lane, parked_per_side, bicycles_per_side, parked_bicycles_per_side,
        pedestrians_per_side, clutter_per_side, hedges_per_side, furniture_per_side: objects per
            100 m of lane / side (pedestrians counted one by one, though they come in groups).
        curb_parking_share: fraction of parked vehicles standing half on the sidewalk.
        angled_parking_share: fraction of parked vehicles standing 9-20 deg off the curb line
            (pulling in or out).
        pedestrian_group_mean: mean size of a pedestrian group (1 + Poisson, at most 4).
        max_grade: the road's grade (rise per metre along x) is uniform in ``[-max_grade, max_grade]``.
        poles_spacing: metres between street poles; a tree stands halfway between two poles
            with probability ``tree_share``.
        truck_share, bus_share: fractions of moving vehicles that are trucks / buses.
        margin: road laid out this far (m) beyond the sensor range around the ego's path.
    """

    ego_speed: tuple[float, float] = (6.0, 12.0)
    traffic_per_lane: float = 3.5
    parked_per_side: float = 5.5
    curb_parking_share: float = 0.25
    angled_parking_share: float = 0.15
    bicycles_per_side: float = 1.0
    parked_bicycles_per_side: float = 2.0
    pedestrians_per_side: float = 7.0
    pedestrian_group_mean: float = 2.0
    furniture_per_side: float = 8.0
    poles_spacing: float = 25.0
    tree_share: float = 0.6
    clutter_per_side: float = 14.0
    hedges_per_side: float = 4.0
    truck_share: float = 0.15
    bus_share: float = 0.1
    margin: float = 20.0
    max_grade: float = 0.03

    def __post_init__(self) -> None:
        if self.pedestrian_group_mean < 1.0 or not 0.0 <= self.max_grade <= 0.1:
            raise DatasetError(f"WorldConfig pedestrian_group_mean={self.pedestrian_group_mean!r}, "
                               f"max_grade={self.max_grade!r} is invalid: need pedestrian_group_mean >= 1 "
                               f"and 0 <= max_grade <= 0.1")


@dataclass
class StaticScene:
    """Fixed boxes, road frame: ``boxes [S, 7]`` ``[x, y, z, l, w, h, yaw]``, ``reflectivity [S]``."""

    boxes: np.ndarray
    reflectivity: np.ndarray


@dataclass
class Agents:
    """Annotated movers, road frame, their state at t = 0 and their motion.

    Attributes:
        class_index: ``[A]`` index into :data:`AGENT_CLASSES`.
        sizes: ``[A, 3]`` l, w, h (m).
        start: ``[A, 2]`` x, y at t = 0 (m).
        yaw0: ``[A]`` heading at t = 0 (rad).
        speed: ``[A]`` m/s along the heading (0 = parked / standing).
        yaw_rate: ``[A]`` rad/s.
        reflectivity: ``[A]``.
    """

    class_index: np.ndarray
    sizes: np.ndarray
    start: np.ndarray
    yaw0: np.ndarray
    speed: np.ndarray
    yaw_rate: np.ndarray
    reflectivity: np.ndarray

    def __len__(self) -> int:
        return int(self.class_index.shape[0])

    def state_at(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(boxes [A, 7] [x, y, z, l, w, h, yaw] with z at the centre, velocities [A, 2] m/s)`` at time t (s)."""
        yaw = self.yaw0 + self.yaw_rate * t
        turning = np.abs(self.yaw_rate) > 1e-9
        safe_rate = np.where(turning, self.yaw_rate, 1.0)
        # Integral of speed * (cos, sin)(yaw0 + rate * s) ds over [0, t]; straight motion as the limit.
        dx = np.where(turning, self.speed * (np.sin(yaw) - np.sin(self.yaw0)) / safe_rate, self.speed * np.cos(self.yaw0) * t)
        dy = np.where(turning, -self.speed * (np.cos(yaw) - np.cos(self.yaw0)) / safe_rate, self.speed * np.sin(self.yaw0) * t)
        boxes = np.column_stack([self.start[:, 0] + dx, self.start[:, 1] + dy, 0.5 * self.sizes[:, 2],
                                 self.sizes, yaw])
        velocity = self.speed[:, None] * np.column_stack([np.cos(yaw), np.sin(yaw)])
        return boxes, velocity

    def shape_index(self) -> np.ndarray:
        """``[A]`` index into :data:`~.shapes.SHAPES` of every agent (moving or static shape of its class)."""
        moving = np.array([c.moving_shape for c in AGENT_CLASSES])[self.class_index]
        static = np.array([c.static_shape for c in AGENT_CLASSES])[self.class_index]
        return np.where(self.speed > 0, moving, static)

    def attributes(self) -> list[str]:
        """Attribute name of every agent (moving or static variant of its class)."""
        return [AGENT_CLASSES[c].moving_attribute if s > 0 else AGENT_CLASSES[c].static_attribute
                for c, s in zip(self.class_index.tolist(), self.speed.tolist())]


@dataclass
class EgoPath:
    """Ego drives along the ego lane at constant speed, weaving gently (road frame, ground z = 0)."""

    x0: float
    speed: float
    weave_amplitude: float
    weave_period: float
    weave_phase: float

    def pose_at(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """``(ego2road 4x4, velocity [2])`` at time t (s)."""
        omega = 2 * np.pi / self.weave_period
        x = self.x0 + self.speed * t
        y = EGO_LANE_Y + self.weave_amplitude * np.sin(omega * t + self.weave_phase)
        vy = self.weave_amplitude * omega * np.cos(omega * t + self.weave_phase)
        yaw = np.arctan2(vy, self.speed)
        return make_transform(yaw_to_quaternion(yaw), [x, y, 0.0]), np.array([self.speed, vy])


@dataclass
class World:
    """A road scene: where the road lies in the global frame, what stands and moves on it.

    ``grade``: the ground is ``z = grade * x`` in the road frame; the static boxes already stand
    on it, agents and the ego are lifted onto it by :meth:`agent_state_at` / :meth:`ego_pose_at`.
    """

    road2global: np.ndarray
    static: StaticScene
    agents: Agents
    ego: EgoPath
    grade: float = 0.0

    def agent_state_at(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`Agents.state_at` with each box standing on the ground at its centre."""
        boxes, velocity = self.agents.state_at(t)
        boxes[:, 2] += self.grade * boxes[:, 0]
        return boxes, velocity

    def ego_pose_at(self, t: float) -> np.ndarray:
        """``ego2road`` 4x4 at time t (s), the ego origin on the ground (poses stay level)."""
        ego2road, _ = self.ego.pose_at(t)
        ego2road[2, 3] = self.grade * ego2road[0, 3]
        return ego2road


def _sizes(rng: np.random.Generator, classes: np.ndarray) -> np.ndarray:
    mean = np.array([AGENT_CLASSES[c].mean_size for c in range(len(AGENT_CLASSES))])[classes]
    std = np.array([AGENT_CLASSES[c].size_std for c in range(len(AGENT_CLASSES))])[classes]
    return np.maximum(mean + std * rng.standard_normal(mean.shape), 0.7 * mean)


def _row_capacity(x_lo: float, x_hi: float, per_100m: float) -> int:
    """How many candidates to draw for a row: well above the expected count."""
    return int(2 * per_100m * (x_hi - x_lo) / 100.0 + 10)


def _row(rng: np.random.Generator, x_lo: float, x_hi: float, per_100m: float, lengths: np.ndarray,
         min_gap: float) -> np.ndarray:
    """Centres along x of a row of objects of the given ``lengths [n]`` (m), at least ``min_gap``
    apart, ``per_100m`` of them per 100 m on average. Returns the centres ``[k]`` of the first k
    objects that fit before ``x_hi``."""
    expected = max(per_100m * (x_hi - x_lo) / 100.0, 1e-6)
    mean_gap = max((x_hi - x_lo) / expected - float(lengths.mean()) - min_gap, 0.1)
    steps = 0.5 * (lengths + np.roll(lengths, 1)) + min_gap + rng.exponential(mean_gap, lengths.shape[0])
    steps[0] = rng.uniform(0, mean_gap + lengths[0])
    centers = x_lo + np.cumsum(steps)
    return centers[: int(np.sum(centers + 0.5 * lengths < x_hi))]


def _group(classes: np.ndarray, sizes: np.ndarray, x: np.ndarray, y: np.ndarray | float, yaw: np.ndarray | float,
           speed: np.ndarray | float, rate: np.ndarray | float = 0.0) -> dict[str, np.ndarray]:
    n = x.shape[0]
    return dict(classes=classes[:n], sizes=sizes[:n], x=x, y=np.broadcast_to(y, (n,)).astype(float),
                yaw=np.broadcast_to(yaw, (n,)).astype(float), speed=np.broadcast_to(speed, (n,)).astype(float),
                rate=np.broadcast_to(rate, (n,)).astype(float))


def _lane_agents(rng: np.random.Generator, cfg: WorldConfig, x_lo: float, x_hi: float,
                 ego: EgoPath) -> list[dict[str, np.ndarray]]:
    shares = [1 - cfg.truck_share - cfg.bus_share, cfg.truck_share, cfg.bus_share]
    groups = []
    for y, direction in LANES:
        if y == EGO_LANE_Y:
            speed = ego.speed
        elif direction > 0:
            speed = float(np.clip(ego.speed + rng.uniform(-3, 3), 3.0, 16.0))
        else:
            speed = rng.uniform(7.0, 13.0)
        classes = rng.choice([CAR, TRUCK, BUS], size=_row_capacity(x_lo, x_hi, cfg.traffic_per_lane), p=shares)
        sizes = _sizes(rng, classes)
        xs = _row(rng, x_lo, x_hi, cfg.traffic_per_lane, sizes[:, 0], 6.0)
        group = _group(classes, sizes, xs, y, 0.0 if direction > 0 else np.pi, speed)
        if y == EGO_LANE_Y:  # leave room around the ego, who drives at this lane's speed
            clear = np.abs(xs - ego.x0) > 12.0 + 0.5 * group["sizes"][:, 0]
            group = {k: v[clear] for k, v in group.items()}
        groups.append(group)
    return groups


def _clear_of(x: np.ndarray, half_length: np.ndarray, obstacle_x: np.ndarray, clearance: float) -> np.ndarray:
    """``[n]`` bool: objects at ``x [n]`` with ``half_length [n]`` (m) stay ``clearance`` (m) away
    along x from every obstacle at ``obstacle_x [k]``."""
    gap = np.abs(x[:, None] - obstacle_x[None, :]) - half_length[:, None]
    return np.all(gap > clearance, axis=1)


def _pedestrian_groups(rng: np.random.Generator, cfg: WorldConfig, x_lo: float, x_hi: float,
                       side: float) -> dict[str, np.ndarray]:
    """Walking and standing pedestrians on one sidewalk, in groups: members of a walking group
    share heading, speed and turn rate (two abreast 0.75 m apart, pairs 0.9 m apart); a standing group
    clusters within 1.5 m, each member facing its own way."""
    num_groups = rng.poisson(cfg.pedestrians_per_side * (x_hi - x_lo) / 100.0 / cfg.pedestrian_group_mean)
    group_size = np.minimum(1 + rng.poisson(cfg.pedestrian_group_mean - 1.0, num_groups), 4)
    group = np.repeat(np.arange(num_groups), group_size)
    member = np.arange(group.shape[0]) - np.repeat(np.cumsum(group_size) - group_size, group_size)
    n = group.shape[0]
    walking = (rng.random(num_groups) < 0.7)[group]
    along = (np.where(rng.random(num_groups) < 0.5, 0.0, np.pi) + rng.normal(0, 0.05, num_groups))[group]
    direction = np.cos(along)
    abreast = np.where(walking, 0.75 * (member % 2), rng.uniform(0.0, 0.6, n))
    behind = np.where(walking, -0.9 * (member // 2) * direction, rng.uniform(-0.75, 0.75, n))
    classes = np.full(n, PEDESTRIAN)
    return _group(classes, _sizes(rng, classes), rng.uniform(x_lo, x_hi, num_groups)[group] + behind,
                  side * (rng.uniform(10.5, 10.6, num_groups)[group] + abreast),
                  np.where(walking, along, rng.uniform(-np.pi, np.pi, n)),
                  np.where(walking, rng.uniform(0.8, 1.6, num_groups)[group], 0.0),
                  np.where(walking, rng.uniform(-0.06, 0.06, num_groups)[group], 0.0))


def _side_agents(rng: np.random.Generator, cfg: WorldConfig, x_lo: float, x_hi: float,
                 curb_x: dict[float, np.ndarray], furniture_x: dict[float, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Parked vehicles (clear of the curb's poles and trees ``curb_x[side]``; those half on the
    sidewalk also clear of the street furniture ``furniture_x[side]``), riding and parked
    bicycles, walking and standing pedestrians, on both sides of the road."""
    groups = []
    for side in (-1.0, 1.0):
        heading = 0.0 if side < 0 else np.pi  # right-hand traffic on each side
        classes = rng.choice([CAR, TRUCK], size=_row_capacity(x_lo, x_hi, cfg.parked_per_side), p=[0.85, 0.15])
        sizes = _sizes(rng, classes)
        xs = _row(rng, x_lo, x_hi, cfg.parked_per_side, sizes[:, 0], 1.0)
        n = xs.shape[0]
        on_curb = rng.random(n) < cfg.curb_parking_share
        lateral = np.where(on_curb, 9.1, 8.6) + rng.uniform(-0.15, 0.15, n)
        angle = np.where(rng.random(n) < cfg.angled_parking_share, rng.choice([-1.0, 1.0], n) * rng.uniform(0.15, 0.35, n),
                         rng.uniform(-0.04, 0.04, n))
        yaw = heading + angle + np.where(rng.random(n) < 0.1, np.pi, 0.0)  # some park nose out
        group = _group(classes, sizes, xs, side * lateral, yaw, 0.0)
        half = 0.5 * group["sizes"][:, 0]
        clear = _clear_of(xs, half, curb_x[side], 0.4) & (~on_curb | _clear_of(xs, half, furniture_x[side], 0.3))
        groups.append({k: v[clear] for k, v in group.items()})
        classes = np.full(_row_capacity(x_lo, x_hi, cfg.bicycles_per_side), BICYCLE)
        sizes = _sizes(rng, classes)
        xs = _row(rng, x_lo, x_hi, cfg.bicycles_per_side, sizes[:, 0], 4.0)
        groups.append(_group(classes, sizes, xs, side * 7.2, heading, rng.uniform(3.0, 6.0)))
        classes = np.full(_row_capacity(x_lo, x_hi, cfg.parked_bicycles_per_side), BICYCLE)
        sizes = _sizes(rng, classes)
        xs = _row(rng, x_lo, x_hi, cfg.parked_bicycles_per_side, sizes[:, 0], 0.3)
        n = xs.shape[0]
        groups.append(_group(classes, sizes, xs, side * (12.0 + rng.uniform(-0.05, 0.05, n)),
                             rng.choice([0.0, np.pi], n) + rng.normal(0, 0.05, n), 0.0))
        groups.append(_pedestrian_groups(rng, cfg, x_lo, x_hi, side))
    return groups


def _curb_positions(rng: np.random.Generator, cfg: WorldConfig, x_lo: float, x_hi: float
                    ) -> dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per side (-1, +1): ``(pole x [p], tree x [t], street furniture x [f])`` along the curb (m)."""
    out = {}
    for side in (-1.0, 1.0):
        poles = np.arange(x_lo + rng.uniform(0, cfg.poles_spacing), x_hi, cfg.poles_spacing)
        poles = poles + rng.uniform(-2, 2, poles.shape[0])
        trees = poles[:-1] + 0.5 * cfg.poles_spacing + rng.uniform(-3, 3, max(poles.shape[0] - 1, 0))
        furniture = rng.uniform(x_lo, x_hi, rng.poisson(cfg.furniture_per_side * (x_hi - x_lo) / 100.0))
        out[side] = (poles, trees[rng.random(trees.shape[0]) < cfg.tree_share], furniture)
    return out


#: Street furniture of pedestrian size, ``[kind, (l, w, h, reflectivity), (lo, hi)]`` (m; 0..255):
#: uniform ranges. Sign posts and standing figures get a second box on top (sign plate, head).
_FURNITURE = np.array([
    [(0.15, 0.25), (0.15, 0.25), (0.8, 1.1), (60, 120)],   # bollard
    [(0.45, 0.7), (0.45, 0.7), (0.9, 1.25), (15, 40)],     # trash bin
    [(0.06, 0.1), (0.06, 0.1), (2.0, 2.6), (60, 100)],     # sign post (plate on top)
    [(0.35, 0.55), (0.3, 0.45), (1.2, 1.6), (10, 35)],     # standing figure: mannequin, ad stand (head on top)
])
_SIGN_POST, _FIGURE = 2, 3


def _street_furniture(rng: np.random.Generator, x: np.ndarray, side: float) -> tuple[np.ndarray, np.ndarray]:
    """Pedestrian-sized clutter at ``x [f]`` along the curb side of a sidewalk:
    ``(boxes [F, 7] road frame, reflectivity [F])``."""
    n = x.shape[0]
    kind = rng.integers(0, len(_FURNITURE), n)
    size = rng.uniform(_FURNITURE[kind, :, 0], _FURNITURE[kind, :, 1])  # [n, 4] l, w, h, reflectivity
    y = side * rng.uniform(9.95, 10.1, n)
    yaw = rng.uniform(-np.pi, np.pi, n)
    body = _upright(x, y, 0.0, size[:, 0], size[:, 1], size[:, 2], yaw)
    topped = np.flatnonzero((kind == _SIGN_POST) | (kind == _FIGURE))
    sign = kind[topped] == _SIGN_POST
    top_l = np.where(sign, rng.uniform(0.5, 0.7, topped.shape[0]), 0.22)
    top_w = np.where(sign, 0.04, 0.2)
    top_h = np.where(sign, rng.uniform(0.4, 0.7, topped.shape[0]), 0.25)
    top = _upright(x[topped], y[topped], size[topped, 2], top_l, top_w, top_h, yaw[topped])
    return np.concatenate([body, top]), np.concatenate([size[:, 3], size[topped, 3]])


def _upright(x: np.ndarray, y: np.ndarray, bottom: np.ndarray | float, length: np.ndarray, width: np.ndarray,
             height: np.ndarray, yaw: np.ndarray | float) -> np.ndarray:
    """``[n, 7]`` boxes ``[x, y, z, l, w, h, yaw]`` (z at the centre) from their bottom heights."""
    n = x.shape[0]
    return np.column_stack([x, np.broadcast_to(y, (n,)), bottom + 0.5 * height, np.broadcast_to(length, (n,)),
                            np.broadcast_to(width, (n,)), height, np.broadcast_to(yaw, (n,))])


def _static_scene(rng: np.random.Generator, cfg: WorldConfig, x_lo: float, x_hi: float,
                  curb: dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> StaticScene:
    """Buildings, poles (0.25 m square), trees (trunk + canopy), street furniture, clutter and hedges."""
    boxes, refl = [], []
    for side in (-1.0, 1.0):
        lengths = rng.uniform(10, 30, _row_capacity(x_lo, x_hi, 100.0 / 28.0))
        xs = _row(rng, x_lo, x_hi, 100.0 / 28.0, lengths, 3.0)
        n = xs.shape[0]
        depth, height = rng.uniform(8, 20, n), rng.uniform(4, 20, n)
        near = 14.0 + rng.uniform(0, 3, n)
        boxes.append(_upright(xs, side * (near + 0.5 * depth), 0.0, lengths[:n], depth, height, rng.uniform(-0.03, 0.03, n)))
        refl.append(rng.uniform(30, 70, n))
        poles, trees, furniture = curb[side]
        furniture_boxes, furniture_refl = _street_furniture(rng, furniture, side)
        boxes.append(furniture_boxes)
        refl.append(furniture_refl)
        boxes.append(_upright(poles, side * 9.6, 0.0, 0.25, 0.25, rng.uniform(5, 8, poles.shape[0]), 0.0))
        refl.append(np.full(poles.shape, 80.0))
        n = trees.shape[0]
        canopy_bottom, canopy_size = rng.uniform(4.3, 5.0, n), rng.uniform(2.5, 4.5, (n, 2))
        trunk = rng.uniform(0.3, 0.5, n)
        boxes.append(_upright(trees, side * 9.6, 0.0, trunk, trunk, canopy_bottom + 0.5, rng.uniform(-np.pi, np.pi, n)))
        boxes.append(_upright(trees + rng.uniform(-0.5, 0.5, n), side * (9.6 + rng.uniform(-0.3, 1.0, n)), canopy_bottom,
                              canopy_size[:, 0], canopy_size[:, 1], rng.uniform(2.0, 4.0, n), rng.uniform(-np.pi, np.pi, n)))
        refl.extend([rng.uniform(25, 35, n), rng.uniform(15, 35, n)])
        n = rng.poisson(cfg.clutter_per_side * (x_hi - x_lo) / 100.0)
        size = rng.uniform(0.4, 1.2, (n, 2))
        boxes.append(_upright(rng.uniform(x_lo, x_hi, n), side * rng.uniform(13.2, 13.6, n), 0.0, size[:, 0], size[:, 1],
                              rng.uniform(0.3, 2.5, n), rng.uniform(-np.pi, np.pi, n)))
        refl.append(rng.uniform(15, 40, n))
        lengths = rng.uniform(2, 8, _row_capacity(x_lo, x_hi, cfg.hedges_per_side))
        xs = _row(rng, x_lo, x_hi, cfg.hedges_per_side, lengths, 1.0)
        n = xs.shape[0]
        boxes.append(_upright(xs, side * rng.uniform(13.3, 13.5, n), 0.0, lengths[:n], rng.uniform(0.8, 1.2, n),
                              rng.uniform(0.6, 1.5, n), rng.uniform(-0.05, 0.05, n)))
        refl.append(rng.uniform(15, 30, n))
    return StaticScene(np.concatenate(boxes), np.concatenate(refl))


def build_world(rng: np.random.Generator, config: WorldConfig, duration: float, sensor_range: float) -> World:
    """Lay out a road scene for a drive of ``duration`` seconds seen up to ``sensor_range`` metres."""
    ego = EgoPath(x0=0.0, speed=rng.uniform(*config.ego_speed), weave_amplitude=rng.uniform(0.1, 0.4),
                  weave_period=rng.uniform(5.0, 9.0), weave_phase=rng.uniform(0, 2 * np.pi))
    reach = sensor_range + config.margin
    static_lo, static_hi = -reach, ego.speed * duration + reach
    travel = 16.0 * duration  # the fastest agent's travel
    agent_lo, agent_hi = static_lo - travel, static_hi + travel
    curb = _curb_positions(rng, config, static_lo, static_hi)
    curb_x = {side: np.concatenate([poles, trees]) for side, (poles, trees, _) in curb.items()}
    furniture_x = {side: furniture for side, (_, _, furniture) in curb.items()}
    groups = (_lane_agents(rng, config, agent_lo, agent_hi, ego)
              + _side_agents(rng, config, agent_lo, agent_hi, curb_x, furniture_x))
    cat = {k: np.concatenate([g[k] for g in groups]) for k in groups[0]}
    classes = cat["classes"].astype(np.int64)
    height_scale = np.array([c.static_height_scale for c in AGENT_CLASSES])[classes]
    sizes = cat["sizes"] * np.column_stack([np.ones((classes.shape[0], 2)), np.where(cat["speed"] > 0, 1.0, height_scale)])
    refl_range = np.array([AGENT_CLASSES[c].reflectivity for c in range(len(AGENT_CLASSES))])[classes]
    agents = Agents(classes, sizes, np.column_stack([cat["x"], cat["y"]]), cat["yaw"], cat["speed"],
                    cat["rate"], rng.uniform(refl_range[:, 0], refl_range[:, 1]))
    road_yaw = rng.uniform(-np.pi, np.pi)
    road2global = make_transform(yaw_to_quaternion(road_yaw),
                                 [rng.uniform(-3000, 3000), rng.uniform(-3000, 3000), rng.uniform(0, 40)])
    grade = rng.uniform(-config.max_grade, config.max_grade)
    static = _static_scene(rng, config, static_lo, static_hi, curb)
    static.boxes[:, 2] += grade * static.boxes[:, 0]
    return World(road2global, static, agents, ego, grade)
