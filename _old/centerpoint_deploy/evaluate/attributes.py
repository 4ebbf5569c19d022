"""Attributes for predictions, which CenterPoint does not regress.

mmdet3d's nuScenes result formatting (which AWML's T4 evaluation inherits) names each
predicted box's attribute from its class and predicted speed; without it every AAE would
be 1. The rule, with the speed threshold of 0.2 m/s:

- moving vehicles (car, truck, bus, trailer, construction_vehicle) → ``vehicle.moving``;
  moving two-wheelers (bicycle, motorcycle) → ``cycle.with_rider``;
- a slow pedestrian → ``pedestrian.standing``, a slow bus → ``vehicle.stopped``;
- anything else → the class default below.
"""

from __future__ import annotations

import numpy as np

MOVING_SPEED = 0.2  # m/s

_DEFAULT_ATTRIBUTE = {
    "car": "vehicle.parked", "truck": "vehicle.parked", "trailer": "vehicle.parked",
    "construction_vehicle": "vehicle.parked", "bus": "vehicle.moving",
    "bicycle": "cycle.without_rider", "motorcycle": "cycle.without_rider",
    "pedestrian": "pedestrian.moving", "barrier": "", "traffic_cone": "",
}
_MOVING_VEHICLES = ("car", "truck", "bus", "trailer", "construction_vehicle")
_TWO_WHEELERS = ("bicycle", "motorcycle")


def attributes_from_velocity(names: np.ndarray, velocities: np.ndarray) -> np.ndarray:
    """Attribute name per box by mmdet3d's class-and-speed rule.

    Args:
        names: ``[K]`` class names (unknown classes get ``""``).
        velocities: ``[K, 2]`` ``(vx, vy)`` in m/s.

    Returns:
        ``[K]`` attribute names (str array).
    """
    names = np.asarray(names, dtype=str)
    moving = np.hypot(velocities[:, 0], velocities[:, 1]) > MOVING_SPEED
    attrs = np.array([_DEFAULT_ATTRIBUTE.get(n, "") for n in names.tolist()], dtype=object)
    attrs[moving & np.isin(names, _MOVING_VEHICLES)] = "vehicle.moving"
    attrs[moving & np.isin(names, _TWO_WHEELERS)] = "cycle.with_rider"
    attrs[~moving & (names == "pedestrian")] = "pedestrian.standing"
    attrs[~moving & (names == "bus")] = "vehicle.stopped"
    return attrs.astype(str) if attrs.size else np.zeros(0, dtype=str)
