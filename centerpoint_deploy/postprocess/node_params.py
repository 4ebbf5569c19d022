"""The post-processing parameters of Autoware's ``autoware_lidar_centerpoint`` node, as typed values.

One source for three users: the node-equivalent post-processing (``postprocess: autoware``),
the v4.1 bundle writer and validator (``ml_package.param.yaml``,
``detection_class_remapper.param.yaml``) and threshold calibration. Class names are the
model's (``config.class_names``, any case); the bundle writes them upper case as the node does.

Defaults are the node's (``config/centerpoint_common.param.yaml`` and the ml_package schema):
score 0.35 in every distance bin ``[50, 90, 121, 200]`` m, yaw-norm 0.3 (0.0 for the last,
pedestrian, class of the 5-class models), circle NMS 0.5 m, IoU-BEV NMS 0.1 within 10 m.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from math import isfinite
from typing import Sequence

from centerpoint_deploy.errors import ConfigError

#: The node's default distance bins (upper limits, metres) of ``detection_score_thresholds``.
DEFAULT_DISTANCE_BINS: tuple[float, ...] = (50.0, 90.0, 121.0, 200.0)
#: The node's default confidence threshold in every bin.
DEFAULT_SCORE_THRESHOLD = 0.35
#: The node's default yaw-norm threshold (a pedestrian class gets 0.0, see :func:`default_yaw_norm_thresholds`).
DEFAULT_YAW_NORM_THRESHOLD = 0.3
#: The node's default ``cloud_capacity`` (points per frame it can hold; ``centerpoint_common.param.yaml``).
DEFAULT_CLOUD_CAPACITY = 2_000_000

#: Autoware's object labels (``autoware_perception_msgs/ObjectClassification``) in their numeric
#: order; the node's ``detection_class_remapper`` matrices are 8 x 8 in this order.
AUTOWARE_LABELS: tuple[str, ...] = ("UNKNOWN", "CAR", "TRUCK", "BUS", "TRAILER", "MOTORCYCLE", "BICYCLE",
                                    "PEDESTRIAN")
#: The node's class-name -> label rule (``ros_utils.cpp`` ``getSemanticType``): these names, upper
#: case, exactly; any other name is UNKNOWN. ``MOTORBIKE`` is the name the node knows for MOTORCYCLE.
_SEMANTIC_TYPES = {"CAR": 1, "TRUCK": 2, "BUS": 3, "TRAILER": 4, "MOTORBIKE": 5, "BICYCLE": 6, "PEDESTRIAN": 7}


def semantic_label(class_name: str) -> int:
    """The Autoware label index (into :data:`AUTOWARE_LABELS`) the node gives a model class.

    The node compares the bundle's ``class_names`` (written upper case) with its fixed list;
    a name it does not know becomes UNKNOWN (0), as in the node.
    """
    return _SEMANTIC_TYPES.get(class_name.upper(), 0)


def _check_unit_interval(what: str, values: Sequence[float]) -> None:
    bad = [v for v in values if not (isinstance(v, (int, float)) and isfinite(v) and 0.0 <= v <= 1.0)]
    if bad:
        raise ConfigError(f"{what} must be numbers in [0, 1]; got {list(values)}")


@dataclass(frozen=True)
class ScoreThresholds:
    """Minimum confidence per class and per distance bin (``detection_score_thresholds``).

    A box of class ``c`` whose BEV centre lies at distance ``d`` from the sensor falls in the
    first bin with ``d <= distance_bin_upper_limits[i]`` (see the autoware post-processing for
    the exact comparison the node makes) and is kept when its score reaches
    ``min_confidence_scores[c][i]``.

    Attributes:
        class_names: the model's classes, in head order.
        distance_bin_upper_limits: ascending upper limits in metres, one per bin.
        min_confidence_scores: ``[num_classes][num_bins]`` thresholds in [0, 1], classes in
            ``class_names`` order.
    """

    class_names: tuple[str, ...]
    distance_bin_upper_limits: tuple[float, ...] = DEFAULT_DISTANCE_BINS
    min_confidence_scores: tuple[tuple[float, ...], ...] = ()

    def __post_init__(self) -> None:
        bins = self.distance_bin_upper_limits
        if not bins or any(not isfinite(b) or b <= 0 for b in bins) or list(bins) != sorted(set(bins)):
            raise ConfigError(f"distance_bin_upper_limits must be positive, finite and strictly ascending; got {list(bins)}")
        if not self.min_confidence_scores:  # the node's default in every cell
            object.__setattr__(self, "min_confidence_scores",
                               tuple((DEFAULT_SCORE_THRESHOLD,) * len(bins) for _ in self.class_names))
        if len(self.min_confidence_scores) != len(self.class_names):
            raise ConfigError(f"min_confidence_scores has {len(self.min_confidence_scores)} rows for "
                              f"{len(self.class_names)} classes {list(self.class_names)}")
        for name, row in zip(self.class_names, self.min_confidence_scores):
            if len(row) != len(bins):
                raise ConfigError(f"min_confidence_scores[{name}] has {len(row)} values for {len(bins)} distance bins")
            _check_unit_interval(f"min_confidence_scores[{name}]", row)

    def at(self, value: float) -> "ScoreThresholds":
        """The same classes and bins with ``value`` in every cell."""
        return ScoreThresholds(self.class_names, self.distance_bin_upper_limits,
                               tuple((float(value),) * len(self.distance_bin_upper_limits) for _ in self.class_names))

    def for_class(self, name: str) -> tuple[float, ...]:
        """The thresholds of class ``name`` (case-insensitive), one per bin."""
        for candidate, row in zip(self.class_names, self.min_confidence_scores):
            if candidate.lower() == name.lower():
                return row
        raise ConfigError(f"class '{name}' is not one of {list(self.class_names)}")


@dataclass(frozen=True)
class ClassRemapper:
    """The node's ``detection_class_remapper``: relabel a box by its BEV footprint area.

    A box of class ``i`` becomes class ``j`` when ``allow_remapping_by_area_matrix[i][j]`` is
    set and ``min_area_matrix[i][j] <= l * w <= max_area_matrix[i][j]`` (see the autoware
    post-processing for the node's exact comparisons and order). All matrices are
    ``[num_classes][num_classes]`` in ``class_names`` order; the identity remapper allows
    nothing.
    """

    class_names: tuple[str, ...]
    allow_remapping_by_area_matrix: tuple[tuple[int, ...], ...] = ()
    min_area_matrix: tuple[tuple[float, ...], ...] = ()
    max_area_matrix: tuple[tuple[float, ...], ...] = ()

    def __post_init__(self) -> None:
        n = len(self.class_names)
        defaults = {"allow_remapping_by_area_matrix": 0, "min_area_matrix": 0.0, "max_area_matrix": 0.0}
        for attr, fill in defaults.items():
            matrix = getattr(self, attr)
            if not matrix:
                object.__setattr__(self, attr, tuple((fill,) * n for _ in range(n)))
            elif len(matrix) != n or any(len(row) != n for row in matrix):
                raise ConfigError(f"{attr} must be {n} x {n} (classes {list(self.class_names)}); "
                                  f"got {[len(row) for row in matrix]} rows of lengths")
        if any(v not in (0, 1) for row in self.allow_remapping_by_area_matrix for v in row):
            raise ConfigError("allow_remapping_by_area_matrix holds 0 or 1 only")

    @property
    def is_identity(self) -> bool:
        return not any(any(row) for row in self.allow_remapping_by_area_matrix)

    def to_node_matrices(self) -> tuple[list[int], list[float], list[float]]:
        """The three matrices in the node's layout: 8 x 8 over :data:`AUTOWARE_LABELS`, row major, flat.

        Row = original label, column = label to remap to, as ``detection_class_remapper.param.yaml``
        holds them. Labels no model class maps to stay 0 (no remapping, empty area range).

        Raises:
            ConfigError: two model classes map to one Autoware label and the remapper is not identity.
        """
        labels = [semantic_label(name) for name in self.class_names]
        if not self.is_identity and len(set(labels)) != len(labels):
            raise ConfigError(f"classes {list(self.class_names)} map to Autoware labels "
                              f"{[AUTOWARE_LABELS[i] for i in labels]}: two share one label, the node's "
                              "8 x 8 remapper cannot tell them apart")
        n = len(AUTOWARE_LABELS)
        allow, low, high = [0] * (n * n), [0.0] * (n * n), [0.0] * (n * n)
        for i, row_label in enumerate(labels):
            for j, col_label in enumerate(labels):
                cell = row_label * n + col_label
                allow[cell] = self.allow_remapping_by_area_matrix[i][j]
                low[cell] = self.min_area_matrix[i][j]
                high[cell] = self.max_area_matrix[i][j]
        return allow, low, high

    @classmethod
    def from_node_matrices(cls, class_names: Sequence[str], allow: Sequence[int], min_area: Sequence[float],
                           max_area: Sequence[float]) -> "ClassRemapper":
        """Read the node's flat 8 x 8 matrices (see :meth:`to_node_matrices`) for a model with ``class_names``.

        Raises:
            ConfigError: a matrix is not 8 x 8, or it remaps a model class to a label that no
                model class has (the boxes would leave the model's classes).
        """
        n = len(AUTOWARE_LABELS)
        for what, matrix in (("allow_remapping_by_area_matrix", allow), ("min_area_matrix", min_area),
                             ("max_area_matrix", max_area)):
            if len(matrix) != n * n:
                raise ConfigError(f"{what} must hold {n} x {n} = {n * n} values (labels {list(AUTOWARE_LABELS)}); "
                                  f"got {len(matrix)}")
        names = tuple(class_names)
        labels = [semantic_label(name) for name in names]
        for row_label in set(labels):
            for col_label in range(n):
                if allow[row_label * n + col_label] and col_label not in labels:
                    raise ConfigError(f"allow_remapping_by_area_matrix remaps {AUTOWARE_LABELS[row_label]} to "
                                      f"{AUTOWARE_LABELS[col_label]}, which is not one of the model's classes "
                                      f"{list(names)}")
        return cls(names,
                   tuple(tuple(int(allow[r * n + c]) for c in labels) for r in labels),
                   tuple(tuple(float(min_area[r * n + c]) for c in labels) for r in labels),
                   tuple(tuple(float(max_area[r * n + c]) for c in labels) for r in labels))


def default_yaw_norm_thresholds(class_names: Sequence[str]) -> tuple[float, ...]:
    """The node's default: 0.3 per class, 0.0 for pedestrians (their heading is unreliable)."""
    return tuple(0.0 if name.lower() == "pedestrian" else DEFAULT_YAW_NORM_THRESHOLD for name in class_names)


@dataclass(frozen=True)
class NodePostprocessParams:
    """Everything the node's post-processing reads besides the head's maps.

    Attributes:
        thresholds: per class x distance bin minimum confidence.
        yaw_norm_thresholds: per class; a box whose ``||(rot0, rot1)||`` is below it scores 0.
        circle_nms_dist_threshold: circle NMS distance in metres (BEV centre distance).
        iou_nms_search_distance_2d: IoU-BEV NMS compares boxes whose centres are within this (m).
        iou_nms_threshold: IoU-BEV above which the lower-scored box is suppressed.
        remapper: the class remapper applied last.
    """

    thresholds: ScoreThresholds
    yaw_norm_thresholds: tuple[float, ...]
    circle_nms_dist_threshold: float = 0.5
    iou_nms_search_distance_2d: float = 10.0
    iou_nms_threshold: float = 0.1
    remapper: ClassRemapper = field(default=None)  # type: ignore[assignment]  # identity, set in __post_init__

    def __post_init__(self) -> None:
        names = self.thresholds.class_names
        if len(self.yaw_norm_thresholds) != len(names):
            raise ConfigError(f"yaw_norm_thresholds has {len(self.yaw_norm_thresholds)} values for "
                              f"{len(names)} classes {list(names)}")
        _check_unit_interval("yaw_norm_thresholds", self.yaw_norm_thresholds)
        for attr in ("circle_nms_dist_threshold", "iou_nms_search_distance_2d"):
            value = getattr(self, attr)
            if not (isfinite(value) and value > 0):
                raise ConfigError(f"{attr} must be a positive distance in metres; got {value}")
        if not (0.0 <= self.iou_nms_threshold <= 1.0):
            raise ConfigError(f"iou_nms_threshold must be in [0, 1]; got {self.iou_nms_threshold}")
        if self.remapper is None:
            object.__setattr__(self, "remapper", ClassRemapper(names))
        elif tuple(self.remapper.class_names) != tuple(names):
            raise ConfigError(f"the class remapper names {list(self.remapper.class_names)}, the model {list(names)}")

    def with_thresholds_at(self, value: float) -> "NodePostprocessParams":
        """These parameters with every score threshold at ``value`` (the rest unchanged)."""
        return replace(self, thresholds=self.thresholds.at(value))

    def loosened(self, score: float, yaw_norm: float) -> "NodePostprocessParams":
        """These parameters with every score threshold lowered by ``score`` and every yaw-norm threshold
        by ``yaw_norm`` (neither below 0): the cells that maps within those errors of these may keep."""
        lowered = tuple(tuple(max(0.0, v - score) for v in row) for row in self.thresholds.min_confidence_scores)
        return replace(self, thresholds=replace(self.thresholds, min_confidence_scores=lowered),
                       yaw_norm_thresholds=tuple(max(0.0, v - yaw_norm) for v in self.yaw_norm_thresholds))

    @classmethod
    def defaults(cls, class_names: Sequence[str]) -> "NodePostprocessParams":
        """The node's defaults for a model with ``class_names``."""
        names = tuple(class_names)
        return cls(ScoreThresholds(names), default_yaw_norm_thresholds(names))
