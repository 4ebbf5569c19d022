"""The typed CenterPoint model configuration.

One frozen dataclass tree describes everything inference needs: point layout, voxel grid,
the four network parts, decoding and NMS. Derived values (grid size, feature-map size,
number of decorated features) are properties and are never stored twice.

Units: metres for ranges and voxel sizes, seconds for time lags.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from centerpoint_deploy.errors import ConfigError

#: Index of the raw point column that the sweep loader overwrites with the time lag
#: (mmdet3d ``LoadPointsFromMultiSweeps`` semantics).
TIME_LAG_COLUMN = 4

#: The pre- and post-processing modes: mmdet3d's (what training reports) or the Autoware node's (what the car runs).
MODES = ("mmdet3d", "autoware")

#: The order of the regression maps every head task emits, after the heatmap.
REGRESSION_HEADS = ("reg", "height", "dim", "rot", "vel")


#: Bounds on sizes, from what one machine (and TensorRT, whose tensors hold at most 2^31 - 1
#: elements) can hold; real models are far inside them (j6gen2: 760 x 760 cells, 384 channels).
MAX_GRID_CELLS = 8192 * 8192
MAX_CHANNELS = 4096
MAX_TENSOR_ELEMENTS = 2**31 - 1
MAX_POINT_COLUMNS = 64
MAX_SWEEPS = 100
MAX_POINTS_PER_PILLAR = 1024
MAX_VOXELS = 2**24
MAX_LAYERS = 64
MAX_BOXES = 100_000


def _fail(field_name: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"config field '{field_name}' = {value!r} is invalid: {allowed}")


def _check_range(field_name: str, value: float, low: float, high: float, what: str = "") -> None:
    """``low <= value <= high`` (finite), else a ConfigError naming the field."""
    finite = isinstance(value, int) or math.isfinite(value)  # math.isfinite overflows on huge ints
    if not (finite and low <= value <= high):
        _fail(field_name, value, what or f"must lie in [{low:g}, {high:g}]")


def _check_norm(section: str, eps: float, momentum: float) -> None:
    if not (math.isfinite(eps) and 0 < eps < 1):
        _fail(f"{section}.norm_eps", eps, "must lie in (0, 1)")
    _check_range(f"{section}.norm_momentum", momentum, 0.0, 1.0)


def _check_widths(field_name: str, widths: tuple[int, ...]) -> None:
    if not widths or len(widths) > MAX_LAYERS or any(not 1 <= c <= MAX_CHANNELS for c in widths):
        _fail(field_name, widths, f"1 to {MAX_LAYERS} widths, each in [1, {MAX_CHANNELS}]")


@dataclass(frozen=True)
class PointsConfig:
    """Layout of the points read from disk and fed to the network.

    Attributes:
        load_dim: floats per point in the point files (5 for T4 / nuScenes ``.pcd.bin``).
        use_dim: raw columns kept, in order; column 4 holds the time lag after sweep merging.
        sweeps_num: previous sweeps merged into each key frame (mmdet3d
            ``LoadPointsFromMultiSweeps``: 0 = key frame only, 1 = key frame plus one sweep).
    """

    load_dim: int = 5
    use_dim: tuple[int, ...] = (0, 1, 2, 3, 4)
    sweeps_num: int = 1

    def validate(self) -> None:
        if self.load_dim < 3:
            _fail("points.load_dim", self.load_dim, "need at least 3 (x, y, z)")
        if len(self.use_dim) < 3 or tuple(self.use_dim[:3]) != (0, 1, 2):
            _fail("points.use_dim", self.use_dim, "must start with 0, 1, 2 (x, y, z)")
        if len(set(self.use_dim)) != len(self.use_dim) or any(
            not 0 <= d < max(self.load_dim, TIME_LAG_COLUMN + 1) for d in self.use_dim
        ):
            _fail("points.use_dim", self.use_dim, f"distinct indices below load_dim={self.load_dim}")
        if self.load_dim > MAX_POINT_COLUMNS:
            _fail("points.load_dim", self.load_dim, f"at most {MAX_POINT_COLUMNS} floats per point")
        _check_range("points.sweeps_num", self.sweeps_num, 0, MAX_SWEEPS)


@dataclass(frozen=True)
class VoxelizationConfig:
    """Pillar grid and hard-voxelization limits.

    Attributes:
        point_cloud_range: ``[x_min, y_min, z_min, x_max, y_max, z_max]``; a point is kept when
            ``min <= p < max`` on every axis.
        voxel_size: ``[vx, vy, vz]``; ``vz`` must span the whole z range (pillars).
        max_num_points: points kept per pillar (the first ones in input order).
        max_voxels: pillars kept per frame (the first ones in input order).
        mode: ``mmdet3d`` (first-appearance order, deterministic) or ``autoware`` (the node's
            shuffled point order and front-to-back pillar order, see
            :mod:`centerpoint_deploy.preprocess.autoware_voxelize`).
    """

    point_cloud_range: tuple[float, float, float, float, float, float] = (
        -121.6, -121.6, -3.0, 121.6, 121.6, 5.0,
    )
    voxel_size: tuple[float, float, float] = (0.32, 0.32, 8.0)
    max_num_points: int = 32
    max_voxels: int = 64000
    mode: str = "mmdet3d"

    @property
    def grid_size(self) -> tuple[int, int, int]:
        """``(nx, ny, nz)``: voxels along x, y, z."""
        r, v = self.point_cloud_range, self.voxel_size
        return tuple(int(round((r[i + 3] - r[i]) / v[i])) for i in range(3))  # type: ignore[return-value]

    def validate(self) -> None:
        r, v = self.point_cloud_range, self.voxel_size
        if len(r) != 6 or any(not math.isfinite(x) for x in r) or any(r[i] >= r[i + 3] for i in range(3)):
            _fail("voxelization.point_cloud_range", r, "6 finite values with min < max per axis")
        if len(v) != 3 or any(not math.isfinite(x) or x <= 0 for x in v):
            _fail("voxelization.voxel_size", v, "3 positive finite values")
        for i, axis in enumerate("xyz"):
            cells = (r[i + 3] - r[i]) / v[i]
            if abs(cells - round(cells)) > 1e-4:
                _fail("voxelization.voxel_size", v, f"the {axis} range must be a whole number of voxels (got {cells:.4f})")
        if self.grid_size[2] != 1:
            _fail("voxelization.voxel_size", v, "pillars need voxel_size[2] equal to the z range")
        nx, ny, _ = self.grid_size
        if nx * ny > MAX_GRID_CELLS:
            _fail("voxelization.voxel_size", v, f"the grid of {nx} x {ny} = {nx * ny} cells is larger than "
                  f"{MAX_GRID_CELLS} cells (8192 x 8192)")
        _check_range("voxelization.max_num_points", self.max_num_points, 1, MAX_POINTS_PER_PILLAR)
        _check_range("voxelization.max_voxels", self.max_voxels, 1, MAX_VOXELS)
        if self.mode not in MODES:
            _fail("voxelization.mode", self.mode, f"one of {', '.join(MODES)}")


@dataclass(frozen=True)
class VoxelEncoderConfig:
    """PillarFeatureNet (mmdet3d) and its "backward" variant.

    Attributes:
        in_channels: raw point features per point (``len(points.use_dim)``).
        feat_channels: PFN layer widths; the last is the pillar feature size (32 for Autoware).
        with_distance: append ``||xyz||`` to the decorated features.
        with_cluster_center: append ``x - x̄, y - ȳ, z - z̄``.
        with_voxel_center: append ``x - xc, y - yc`` (and ``z - zc`` if ``with_voxel_center_z``).
        with_voxel_center_z: False is the "Backward" PillarFeatureNet without the z offset.
        legacy: mmdet3d ``legacy=True`` overwrites x, y, z with the centre offsets.
        norm_eps, norm_momentum: BatchNorm1d settings.
    """

    in_channels: int = 5
    feat_channels: tuple[int, ...] = (32, 32)
    with_distance: bool = False
    with_cluster_center: bool = True
    with_voxel_center: bool = True
    with_voxel_center_z: bool = True
    legacy: bool = False
    norm_eps: float = 1e-3
    norm_momentum: float = 0.01

    @property
    def num_features(self) -> int:
        """F, the decorated features per point fed to the encoder."""
        n = self.in_channels + (1 if self.with_distance else 0)
        n += 3 if self.with_cluster_center else 0
        n += (3 if self.with_voxel_center_z else 2) if self.with_voxel_center else 0
        return n

    @property
    def out_channels(self) -> int:
        return self.feat_channels[-1]

    def validate(self) -> None:
        _check_range("voxel_encoder.in_channels", self.in_channels, 3, MAX_POINT_COLUMNS)
        _check_widths("voxel_encoder.feat_channels", self.feat_channels)
        if any(c % 2 for c in self.feat_channels[:-1]):
            _fail("voxel_encoder.feat_channels", self.feat_channels, "all but the last must be even")
        _check_norm("voxel_encoder", self.norm_eps, self.norm_momentum)


@dataclass(frozen=True)
class BackboneConfig:
    """SECOND: one strided stage per entry, ``layer_nums[i]`` extra 3x3 convs each."""

    in_channels: int = 32
    out_channels: tuple[int, ...] = (64, 128, 256)
    layer_nums: tuple[int, ...] = (3, 5, 5)
    layer_strides: tuple[int, ...] = (1, 2, 2)
    norm_eps: float = 1e-3
    norm_momentum: float = 0.01

    def validate(self) -> None:
        n = len(self.out_channels)
        if n == 0 or len(self.layer_nums) != n or len(self.layer_strides) != n:
            _fail("backbone.out_channels", self.out_channels, "out_channels, layer_nums and layer_strides need equal non-zero lengths")
        _check_range("backbone.in_channels", self.in_channels, 1, MAX_CHANNELS)
        _check_widths("backbone.out_channels", self.out_channels)
        if any(not 0 <= k <= MAX_LAYERS for k in self.layer_nums):
            _fail("backbone.layer_nums", self.layer_nums, f"each in [0, {MAX_LAYERS}]")
        if any(not 1 <= s <= 64 for s in self.layer_strides):
            _fail("backbone.layer_strides", self.layer_strides, "integers in [1, 64]")
        _check_norm("backbone", self.norm_eps, self.norm_momentum)


@dataclass(frozen=True)
class NeckConfig:
    """SECONDFPN: one up-sampling branch per backbone stage, concatenated on channels.

    ``upsample_strides`` may be fractional: a stride of 0.5 is a stride-2 convolution.
    """

    in_channels: tuple[int, ...] = (64, 128, 256)
    out_channels: tuple[int, ...] = (128, 128, 128)
    upsample_strides: tuple[float, ...] = (1, 2, 4)
    use_conv_for_no_stride: bool = True
    norm_eps: float = 1e-3
    norm_momentum: float = 0.01

    @property
    def total_out_channels(self) -> int:
        return sum(self.out_channels)

    def validate(self) -> None:
        n = len(self.in_channels)
        if n == 0 or len(self.out_channels) != n or len(self.upsample_strides) != n:
            _fail("neck.in_channels", self.in_channels, "in_channels, out_channels and upsample_strides need equal non-zero lengths")
        _check_widths("neck.in_channels", self.in_channels)
        _check_widths("neck.out_channels", self.out_channels)
        for s in self.upsample_strides:
            if not math.isfinite(s) or not 1 / 64 <= s <= 64 or (s < 1 and abs(1 / s - round(1 / s)) > 1e-6) \
                    or (s >= 1 and abs(s - round(s)) > 1e-6):
                _fail("neck.upsample_strides", self.upsample_strides,
                      "integers in [1, 64] or unit fractions (0.5, 0.25, ... 1/64)")
        _check_norm("neck", self.norm_eps, self.norm_momentum)


@dataclass(frozen=True)
class HeadTaskConfig:
    """One CenterHead task: the classes its heatmap covers (names from ``class_names``)."""

    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class HeadConfig:
    """CenterHead with one SeparateHead per task.

    Attributes:
        common_heads: ``name -> (channels, num_conv)`` in output order, normally
            reg (2, 2), height (1, 2), dim (3, 2), rot (2, 2), vel (2, 2).
        heatmap_num_conv: convs of the heatmap branch.
        head_conv: hidden width of each branch.
        final_kernel: kernel size of the branch convs (1 or 3).
        init_bias: initial bias of the heatmap's last conv.
        norm_bbox: True when ``dim`` is the log of the size.
        norm_eps, norm_momentum: BatchNorm2d of the shared conv and branch convs.
    """

    in_channels: int = 384
    share_conv_channel: int = 64
    tasks: tuple[HeadTaskConfig, ...] = (
        HeadTaskConfig(("car", "truck", "bus", "bicycle", "pedestrian")),
    )
    common_heads: tuple[tuple[str, int, int], ...] = (
        ("reg", 2, 2), ("height", 1, 2), ("dim", 3, 2), ("rot", 2, 2), ("vel", 2, 2),
    )
    heatmap_num_conv: int = 2
    head_conv: int = 64
    final_kernel: int = 1
    init_bias: float = -4.595
    norm_bbox: bool = True
    norm_eps: float = 1e-5
    norm_momentum: float = 0.1

    def validate(self) -> None:
        if not self.tasks or any(t.num_classes == 0 for t in self.tasks):
            _fail("head.tasks", self.tasks, "at least one task, each with at least one class")
        names = tuple(h[0] for h in self.common_heads)
        if names != REGRESSION_HEADS:
            _fail("head.common_heads", names, f"must be exactly {REGRESSION_HEADS} in this order")
        expected = {"reg": 2, "height": 1, "dim": 3, "rot": 2, "vel": 2}
        for name, channels, num_conv in self.common_heads:
            if channels != expected[name]:
                _fail(f"head.common_heads.{name}", channels, f"{name} has {expected[name]} channels")
            if not 1 <= num_conv <= MAX_LAYERS:
                _fail(f"head.common_heads.{name}", num_conv, f"num_conv must lie in [1, {MAX_LAYERS}]")
        _check_range("head.heatmap_num_conv", self.heatmap_num_conv, 1, MAX_LAYERS)
        _check_range("head.in_channels", self.in_channels, 1, MAX_CHANNELS)
        _check_range("head.share_conv_channel", self.share_conv_channel, 1, MAX_CHANNELS)
        _check_range("head.head_conv", self.head_conv, 1, MAX_CHANNELS)
        if self.final_kernel not in (1, 3):
            _fail("head.final_kernel", self.final_kernel, "1 or 3")
        if not math.isfinite(self.init_bias):
            _fail("head.init_bias", self.init_bias, "must be a finite number")
        _check_norm("head", self.norm_eps, self.norm_momentum)


@dataclass(frozen=True)
class DecodeConfig:
    """CenterPointBBoxCoder settings (mmdet3d)."""

    max_num: int = 500
    score_threshold: float = 0.1
    post_center_range: tuple[float, float, float, float, float, float] = (-200, -200, -10, 200, 200, 10)
    out_size_factor: int = 1

    def validate(self) -> None:
        _check_range("decode.max_num", self.max_num, 1, MAX_BOXES)
        if not 0.0 <= self.score_threshold < 1.0:
            _fail("decode.score_threshold", self.score_threshold, "must lie in [0, 1)")
        _check_range("decode.out_size_factor", self.out_size_factor, 1, 64)
        r = self.post_center_range
        if len(r) != 6 or any(math.isnan(x) for x in r) or any(r[i] > r[i + 3] for i in range(3)):
            _fail("decode.post_center_range", r, "6 values (inf allowed) with min <= max per axis")


@dataclass(frozen=True)
class NmsConfig:
    """Test-time NMS: circle NMS on BEV centre distance, per task."""

    nms_type: str = "circle"
    min_radius: tuple[float, ...] = (1.0,)
    post_max_size: int = 100

    def validate(self) -> None:
        if self.nms_type != "circle":
            _fail("nms.nms_type", self.nms_type, "supported: 'circle'")
        if any(not (math.isfinite(r) and r >= 0) for r in self.min_radius):
            _fail("nms.min_radius", self.min_radius, "finite, non-negative")
        _check_range("nms.post_max_size", self.post_max_size, 1, MAX_BOXES)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to run one CenterPoint model, from points to boxes.

    ``postprocess`` picks the default post-processing: ``mmdet3d`` (top-K decode, circle NMS
    per task) or ``autoware`` (the node's, :mod:`centerpoint_deploy.postprocess.autoware`).
    """

    name: str = "centerpoint"
    class_names: tuple[str, ...] = ("car", "truck", "bus", "bicycle", "pedestrian")
    points: PointsConfig = field(default_factory=PointsConfig)
    voxelization: VoxelizationConfig = field(default_factory=VoxelizationConfig)
    voxel_encoder: VoxelEncoderConfig = field(default_factory=VoxelEncoderConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    neck: NeckConfig = field(default_factory=NeckConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    nms: NmsConfig = field(default_factory=NmsConfig)
    postprocess: str = "mmdet3d"

    # ----- derived values -------------------------------------------------------------
    @property
    def grid_size(self) -> tuple[int, int, int]:
        """``(nx, ny, nz)`` of the voxel grid."""
        return self.voxelization.grid_size

    @property
    def bev_shape(self) -> tuple[int, int]:
        """``(H, W)`` = ``(ny, nx)`` of the scattered BEV map fed to the backbone."""
        nx, ny, _ = self.grid_size
        return ny, nx

    @property
    def feature_map_shape(self) -> tuple[int, int]:
        """``(h, w)`` of the head outputs."""
        h, w = self.bev_shape
        f = self.decode.out_size_factor
        return h // f, w // f

    @property
    def num_features(self) -> int:
        """F, decorated features per point (9, 10 or 11 for the usual models)."""
        return self.voxel_encoder.num_features

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def validate(self) -> "ModelConfig":
        """Check every field and cross-field constraint; return self. Raises ConfigError."""
        if not self.class_names or len(set(self.class_names)) != len(self.class_names):
            _fail("class_names", self.class_names, "non-empty, distinct")
        for part in (self.points, self.voxelization, self.voxel_encoder, self.backbone,
                     self.neck, self.head, self.decode, self.nms):
            part.validate()
        if self.postprocess not in MODES:
            _fail("postprocess", self.postprocess, f"one of {', '.join(MODES)}")
        if self.voxel_encoder.in_channels != len(self.points.use_dim):
            _fail("voxel_encoder.in_channels", self.voxel_encoder.in_channels,
                  f"must equal len(points.use_dim) = {len(self.points.use_dim)}")
        if self.backbone.in_channels != self.voxel_encoder.out_channels:
            _fail("backbone.in_channels", self.backbone.in_channels,
                  f"must equal voxel_encoder.feat_channels[-1] = {self.voxel_encoder.out_channels}")
        if tuple(self.neck.in_channels) != tuple(self.backbone.out_channels):
            _fail("neck.in_channels", self.neck.in_channels,
                  f"must equal backbone.out_channels = {self.backbone.out_channels}")
        if self.head.in_channels != self.neck.total_out_channels:
            _fail("head.in_channels", self.head.in_channels,
                  f"must equal sum(neck.out_channels) = {self.neck.total_out_channels}")
        task_classes = tuple(c for t in self.head.tasks for c in t.class_names)
        if task_classes != self.class_names:
            _fail("head.tasks", task_classes, f"the tasks' classes, in order, must be class_names = {self.class_names}")
        if len(self.nms.min_radius) != len(self.head.tasks):
            _fail("nms.min_radius", self.nms.min_radius, f"one radius per task ({len(self.head.tasks)})")
        # Every neck branch must land on the same stride: the head's out_size_factor.
        stride = 1
        for s, up in zip(self.backbone.layer_strides, self.neck.upsample_strides):
            stride *= s
            branch = stride / up
            if abs(branch - self.decode.out_size_factor) > 1e-6:
                _fail("decode.out_size_factor", self.decode.out_size_factor,
                      f"the neck branches land on stride {branch:g}; backbone.layer_strides and "
                      "neck.upsample_strides must bring every branch to out_size_factor")
        h, w = self.bev_shape
        if h % self.decode.out_size_factor or w % self.decode.out_size_factor:
            _fail("decode.out_size_factor", self.decode.out_size_factor, f"must divide the BEV grid {h}x{w}")
        self._check_tensor_sizes()
        return self

    def _check_tensor_sizes(self) -> None:
        """Every activation must fit one tensor (at most :data:`MAX_TENSOR_ELEMENTS` elements)."""
        h, w = self.bev_shape
        v = self.voxelization
        tensors = [("voxelization.max_voxels", v.max_voxels,
                    v.max_voxels * v.max_num_points * max(self.num_features, *self.voxel_encoder.feat_channels)),
                   ("voxel_encoder.feat_channels", self.voxel_encoder.feat_channels, self.voxel_encoder.out_channels * h * w)]
        stride = 1
        for s, c in zip(self.backbone.layer_strides, self.backbone.out_channels):
            stride *= s
            tensors.append(("backbone.out_channels", self.backbone.out_channels, c * -(-h // stride) * -(-w // stride)))
        fh, fw = self.feature_map_shape
        tensors.append(("neck.out_channels", self.neck.out_channels, self.neck.total_out_channels * fh * fw))
        tensors.append(("head.share_conv_channel", self.head.share_conv_channel,
                        max(self.head.share_conv_channel, self.head.head_conv) * fh * fw))
        for name, value, elements in tensors:
            if elements > MAX_TENSOR_ELEMENTS:
                _fail(name, value, f"gives a tensor of {elements} elements on the {w} x {h} grid; "
                      f"allowed: at most {MAX_TENSOR_ELEMENTS} (2^31 - 1)")

    # ----- (de)serialisation ----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists, not tuples) suitable for YAML / JSON."""
        return plain_data(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelConfig":
        """Build and validate from the nested dict that :meth:`to_dict` writes.

        Unknown keys are errors (naming the key); missing keys take the defaults.
        """
        return _build(cls, data, "").validate()


def plain_data(value: Any) -> Any:
    """Nested dicts/lists of plain values from ``dataclasses.asdict`` output (tuples become lists)."""
    if isinstance(value, dict):
        return {k: plain_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(v) for v in value]
    return value


def _build(cls: type, data: Any, path: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"config section '{path or '<root>'}' must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config field(s) {', '.join(path + k for k in unknown)}; "
                          f"allowed in '{path or '<root>'}': {', '.join(sorted(fields))}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        kwargs[name] = _convert(fields[name].type, value, f"{path}{name}")
    return cls(**kwargs)


def _sequence(value: Any, path: str, what: str) -> list[Any]:
    """``value`` as a list; a string (which would split into letters) or a scalar is refused."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
        raise ConfigError(f"config field '{path}' = {value!r:.80} is invalid: expected a list of {what}")
    return list(value)


def _as_str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"config field '{path}' = {value!r:.80} is invalid: expected a string")
    return value


def _as_float(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"config field '{path}' = {value!r:.80} is invalid: expected a number")
    if isinstance(value, int) and abs(value) > 1e300:  # float() would overflow
        raise ConfigError(f"config field '{path}' = an integer of {value.bit_length()} bits is invalid: at most 1e300 in magnitude")
    return float(value)


_SECTIONS: dict[str, type] = {}


def _convert(type_str: Any, value: Any, path: str) -> Any:
    """Check ``value`` against the field's type; nothing is coerced (no float -> int, no str -> list)."""
    t = str(type_str)
    if t in _SECTIONS:
        return _build(_SECTIONS[t], value, path + ".")
    if t == "tuple[HeadTaskConfig, ...]":
        tasks = []
        for i, v in enumerate(_sequence(value, path, "tasks")):
            names = v.get("class_names") if isinstance(v, Mapping) else v
            if isinstance(v, Mapping) and set(v) - {"class_names"}:
                raise ConfigError(f"unknown config field(s) {path}[{i}].{sorted(set(v) - {'class_names'})[0]}; "
                                  f"allowed in '{path}[{i}]': class_names")
            tasks.append(HeadTaskConfig(tuple(_as_str(n, f"{path}[{i}].class_names")
                                              for n in _sequence(names, f"{path}[{i}].class_names", "class names"))))
        return tuple(tasks)
    if t == "tuple[tuple[str, int, int], ...]":
        heads = []
        for i, v in enumerate(_sequence(value, path, "[name, channels, num_conv] entries")):
            entry = _sequence(v, f"{path}[{i}]", "[name, channels, num_conv]")
            if len(entry) != 3:
                raise ConfigError(f"config field '{path}[{i}]' = {v!r} is invalid: expected [name, channels, num_conv]")
            heads.append((_as_str(entry[0], f"{path}[{i}]"), _as_int(entry[1], f"{path}[{i}]"),
                          _as_int(entry[2], f"{path}[{i}]")))
        return tuple(heads)
    if t.startswith("tuple[str"):
        return tuple(_as_str(v, path) for v in _sequence(value, path, "strings"))
    if t.startswith("tuple[int"):
        return tuple(_as_int(v, path) for v in _sequence(value, path, "integers"))
    if t.startswith("tuple[float"):
        return tuple(_as_float(v, path) for v in _sequence(value, path, "numbers"))
    if t == "int":
        return _as_int(value, path)
    if t == "float":
        return _as_float(value, path)
    if t == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"config field '{path}' = {value!r:.80} is invalid: expected true or false")
        return value
    if t == "str":
        return _as_str(value, path)
    raise ConfigError(f"config field '{path}' has unsupported type {t}")  # pragma: no cover


def _as_int(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"config field '{path}' = {value!r:.80} is invalid: expected an integer "
                          f"(got {type(value).__name__}; floats are not rounded)")
    return value


_SECTIONS.update({
    "PointsConfig": PointsConfig,
    "VoxelizationConfig": VoxelizationConfig,
    "VoxelEncoderConfig": VoxelEncoderConfig,
    "BackboneConfig": BackboneConfig,
    "NeckConfig": NeckConfig,
    "HeadConfig": HeadConfig,
    "DecodeConfig": DecodeConfig,
    "NmsConfig": NmsConfig,
})
