"""Annotation category -> detection class mappings.

A mapping takes a dataset category name (``vehicle.car``, ``pedestrian.adult``) to a class
name; a category it does not name, or one mapped to a class outside ``class_names``, is
dropped from the ground truth. Presets are read-only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

import numpy as np

from centerpoint_deploy.errors import DatasetError

#: AWML ``t4dataset/j6gen2_base.py`` name mapping (T4 DBv1.x-3.x category names), with trailers
#: merged into truck as the j6gen2 config's ``merge_objects`` does.
J6GEN2 = MappingProxyType({
    # DBv1.x / UCv2.0 flat names
    "car": "car", "truck": "truck", "bus": "bus", "trailer": "truck", "motorcycle": "bicycle",
    "bicycle": "bicycle", "police_car": "car", "pedestrian": "pedestrian",
    "police_officer": "pedestrian", "forklift": "car", "construction_worker": "pedestrian",
    "stroller": "pedestrian",
    # DBv2.0 / DBv3.0 dotted names
    "pedestrian.adult": "pedestrian", "pedestrian.child": "pedestrian",
    "pedestrian.construction_worker": "pedestrian", "pedestrian.personal_mobility": "pedestrian",
    "pedestrian.police_officer": "pedestrian", "pedestrian.stroller": "pedestrian",
    "pedestrian.wheelchair": "pedestrian",
    "vehicle.ambulance": "car", "vehicle.bicycle": "bicycle", "vehicle.bus": "bus",
    "vehicle.car": "car", "vehicle.construction": "truck", "vehicle.fire": "truck",
    "vehicle.motorcycle": "bicycle", "vehicle.police": "car", "vehicle.trailer": "truck",
    "vehicle.truck": "truck",
    # DBv1.3
    "ambulance": "car", "kart": "car", "wheelchair": "pedestrian", "personal_mobility": "pedestrian",
    "fire_truck": "truck", "semi_trailer": "truck", "tractor_unit": "truck",
    "construction_vehicle": "truck",
})

#: nuScenes detection challenge: 23 categories -> 10 classes (nuscenes-devkit ``category_to_detection_name``).
NUSCENES = MappingProxyType({
    "movable_object.barrier": "barrier",
    "vehicle.bicycle": "bicycle",
    "vehicle.bus.bendy": "bus",
    "vehicle.bus.rigid": "bus",
    "vehicle.car": "car",
    "vehicle.construction": "construction_vehicle",
    "vehicle.motorcycle": "motorcycle",
    "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian",
    "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.police_officer": "pedestrian",
    "movable_object.trafficcone": "traffic_cone",
    "vehicle.trailer": "trailer",
    "vehicle.truck": "truck",
})

#: Category names that already are class names.
IDENTITY = MappingProxyType({})

PRESETS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {"j6gen2": J6GEN2, "nuscenes": NUSCENES, "identity": IDENTITY}
)

CategoryMapping = str | Mapping[str, str]


def resolve_mapping(mapping: CategoryMapping) -> Mapping[str, str]:
    """A preset name (``j6gen2``, ``nuscenes``, ``identity``) or an explicit dict -> the mapping."""
    if isinstance(mapping, str):
        if mapping not in PRESETS:
            raise DatasetError(f"unknown category mapping '{mapping}'; presets: {', '.join(PRESETS)} "
                               "(or pass a dict category -> class)")
        return PRESETS[mapping]
    if not isinstance(mapping, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
    ):
        raise DatasetError(f"category mapping must be a preset name or a dict str -> str, got {mapping!r}")
    return mapping


def class_indices(categories: Sequence[str], mapping: CategoryMapping, class_names: Sequence[str]) -> np.ndarray:
    """Class index of every category name, -1 where it maps to no class in ``class_names``.

    A name that the mapping does not list is looked up as a class name itself, so datasets
    whose categories already are class names (info pickles, the identity preset) work too.

    Returns:
        ``ndarray[len(categories)]`` int64.
    """
    resolved = resolve_mapping(mapping)
    index = {name: i for i, name in enumerate(class_names)}
    return np.array([index.get(resolved.get(c, c), -1) for c in categories], dtype=np.int64)
