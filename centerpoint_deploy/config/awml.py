"""Map an evaluated AWML / mmdet3d CenterPoint config onto :class:`ModelConfig`.

The only place that knows mmdet3d's names. :data:`AWML_TYPES` is the one table from the
``type`` strings a config may use to the part of our model they become; a type that is not
in it is refused with the list of supported ones. Where a config leaves an argument out,
the mmdet3d default of that class applies (e.g. ``PillarFeatureNet(legacy=True)``,
``SECONDFPN(use_conv_for_no_stride=False)``), as it would in mmdet3d.

Values that mmdet3d configs restate in several places (voxel size and range in the voxel
layer, the voxel encoder and the box coder; the scatter's output shape; the test config's
grid size and ``out_size_factor``) are read once and the restatements are checked against
them.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from centerpoint_deploy.config.pyconfig import Unresolved, contains_unresolved
from centerpoint_deploy.config.schema import REGRESSION_HEADS, ModelConfig, VoxelizationConfig
from centerpoint_deploy.errors import ConfigError

#: AWML / mmdet3d ``type`` string -> (config slot it may fill, what it means for our model).
#: The AWML ``*ONNX`` classes are export twins with the same weights and maths.
AWML_TYPES: dict[str, tuple[str, dict[str, Any]]] = {
    "CenterPoint": ("model", {}),
    "CenterPointONNX": ("model", {}),
    "Det3DDataPreprocessor": ("model.data_preprocessor", {}),
    "PillarFeatureNet": ("model.pts_voxel_encoder", {"with_voxel_center_z": True}),
    "PillarFeatureNetONNX": ("model.pts_voxel_encoder", {"with_voxel_center_z": True}),
    "BackwardPillarFeatureNet": ("model.pts_voxel_encoder", {"with_voxel_center_z": False}),
    "BackwardPillarFeatureNetONNX": ("model.pts_voxel_encoder", {"with_voxel_center_z": False}),
    "PointPillarsScatter": ("model.pts_middle_encoder", {}),
    "SECOND": ("model.pts_backbone", {}),
    "SECONDFPN": ("model.pts_neck", {}),
    "CenterHead": ("model.pts_bbox_head", {}),
    "CenterHeadONNX": ("model.pts_bbox_head", {}),
    "SeparateHead": ("model.pts_bbox_head.separate_head", {}),
    "CustomSeparateHead": ("model.pts_bbox_head.separate_head", {}),
    "SeparateHeadONNX": ("model.pts_bbox_head.separate_head", {}),
    "CenterPointBBoxCoder": ("model.pts_bbox_head.bbox_coder", {}),
}

#: mmdet3d norm layer types that hold plain BatchNorm weights (SyncBN is BatchNorm at test time).
_BATCH_NORMS = {
    "BN1d": ("BN1d", "SyncBN", "naiveSyncBN1d"),
    "BN2d": ("BN", "BN2d", "SyncBN", "naiveSyncBN2d"),
}

_MISSING = object()


class _Section:
    """Read access to one dict of the evaluated config that names its dotted path in errors."""

    def __init__(self, data: Mapping[str, Any], path: str, source: str) -> None:
        self.data = data
        self.path = path
        self.source = source

    def field(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"AWML config {self.source}: field '{self.field(key)}' {message}")

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, default: Any = _MISSING) -> Any:
        """The value at ``key``; ``default`` when absent (required when no default is given)."""
        if key not in self.data:
            if default is _MISSING:
                raise self.error(key, "is required but missing")
            return default
        value = self.data[key]
        unresolved = contains_unresolved(value)
        if unresolved is not None:
            raise self.error(key, f"is needed but could not be evaluated: {unresolved.reason}")
        return value

    def section(self, key: str, default: Mapping[str, Any] | None = None) -> "_Section":
        """The dict at ``key``; only the dict itself must be evaluable, not all of its contents."""
        if key not in self.data and default is None:
            raise self.error(key, "is required but missing")
        value = self.data.get(key, default)
        if isinstance(value, Unresolved):
            raise self.error(key, f"is needed but could not be evaluated: {value.reason}")
        if value is None and default is not None:
            value = default
        if not isinstance(value, Mapping):
            raise self.error(key, f"must be a dict, got {type(value).__name__}")
        return _Section(value, self.field(key), self.source)

    def part(self, key: str, default_type: str | None = None) -> tuple["_Section", dict[str, Any]]:
        """A model part: the section and the meaning of its ``type`` from :data:`AWML_TYPES`."""
        sec = self.section(key, {} if default_type else None)
        slot = sec.path
        type_name = sec.get("type", default_type)
        supported = sorted(t for t, (s, _) in AWML_TYPES.items() if s == slot)
        if not isinstance(type_name, str) or type_name not in AWML_TYPES or AWML_TYPES[type_name][0] != slot:
            raise sec.error("type", f"= {type_name!r} is not supported; supported types: {', '.join(supported)}")
        return sec, AWML_TYPES[type_name][1]

    def number_list(self, key: str, default: Any = _MISSING, kind: type = float) -> list[Any]:
        value = self.get(key, default)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            raise self.error(key, f"= {value!r} must be a list of numbers")
        return [kind(v) for v in value]


def _batch_norm(sec: _Section, key: str, default: dict[str, Any], dims: str) -> tuple[float, float]:
    """(eps, momentum) of a ``norm_cfg``; torch's BatchNorm defaults fill what it leaves out."""
    norm = sec.section(key, default)
    norm_type = norm.get("type", default["type"])
    if norm_type not in _BATCH_NORMS[dims]:
        raise norm.error("type", f"= {norm_type!r} is not supported; supported: {', '.join(_BATCH_NORMS[dims])}")
    return float(norm.get("eps", 1e-5)), float(norm.get("momentum", 0.1))


def _require_no_bias(sec: _Section, key: str, default: dict[str, Any]) -> None:
    layer = sec.section(key, default)
    if layer.get("bias", True) is not False:
        raise layer.error("bias", "must be False: convolutions followed by BatchNorm carry no bias in this model")


def _same(sec: _Section, key: str, value: Any, expected: Any, what: str) -> None:
    """Check that a restated value agrees with the one the model is built from."""
    a, b = list(value), list(expected)
    if len(a) != len(b) or any(not math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-6) for x, y in zip(a, b)):
        raise sec.error(key, f"= {value!r} disagrees with {what} = {expected!r}")


def _pipeline_points(root: _Section, in_channels: int) -> dict[str, Any]:
    """``points`` section from the test pipeline's point loaders, else top-level variables."""
    loader = sweeps = None
    for owner, key in ((root.section("test_dataloader", {}).section("dataset", {}), "pipeline"), (root, "test_pipeline")):
        if owner.has(key):
            pipeline = owner.data[key]  # only the point loaders must be evaluable
            if isinstance(pipeline, Unresolved):
                raise owner.error(key, f"is needed but could not be evaluated: {pipeline.reason}")
            if not isinstance(pipeline, (list, tuple)):
                raise owner.error(key, f"must be a list of transforms, got {type(pipeline).__name__}")
            for i, step in enumerate(pipeline):
                step_type = step.get("type") if isinstance(step, Mapping) else step
                if isinstance(step_type, Unresolved):  # it might be a point loader
                    raise owner.error(f"{key}[{i}]", f"could not be evaluated: {step_type.reason}")
                if step_type == "LoadPointsFromFile":
                    loader = _Section(step, f"{owner.field(key)}[{i}]", root.source)
                elif step_type == "LoadPointsFromMultiSweeps":
                    sweeps = _Section(step, f"{owner.field(key)}[{i}]", root.source)
            break

    if loader is not None:  # mmdet3d LoadPointsFromFile defaults: load_dim=6, use_dim=[0, 1, 2]
        load_dim = int(loader.get("load_dim", 6))
        use_dim = _use_dim(loader, "use_dim", [0, 1, 2])
    else:
        load_dim = int(root.get("point_load_dim", 5))
        use_dim = _use_dim(root, "point_use_dim", list(range(in_channels)))
    sweeps_num = 0
    if sweeps is not None:  # mmdet3d LoadPointsFromMultiSweeps defaults: sweeps_num=10, use_dim=[0, 1, 2, 4]
        sweeps_num = int(sweeps.get("sweeps_num", 10))
        if int(sweeps.get("load_dim", 5)) != load_dim:
            raise sweeps.error("load_dim", f"= {sweeps.get('load_dim', 5)} must equal the key frame's load_dim = {load_dim}")
        picked = _use_dim(sweeps, "use_dim", [0, 1, 2, 4])
        if any(not 0 <= d < len(use_dim) for d in picked):
            raise sweeps.error("use_dim", f"= {picked} indexes past the {len(use_dim)} columns that LoadPointsFromFile keeps")
        use_dim = [use_dim[d] for d in picked]
    elif loader is None:
        sweeps_num = int(root.get("sweeps_num", 0))
    return {"load_dim": load_dim, "use_dim": use_dim, "sweeps_num": sweeps_num}


def _use_dim(sec: _Section, key: str, default: list[int]) -> list[int]:
    value = sec.get(key, default)
    if isinstance(value, int) and not isinstance(value, bool):  # mmdet3d: an int n means range(n)
        return list(range(value))
    return sec.number_list(key, default, int)


def model_config_from_awml(cfg: Mapping[str, Any], name: str, source: str) -> ModelConfig:
    """Build a validated :class:`ModelConfig` from an evaluated AWML / mmdet3d config.

    Args:
        cfg: top-level names of the config after ``_base_`` merging
            (:func:`centerpoint_deploy.config.pyconfig.read_python_config`).
        name: the model name to record (the config file's stem).
        source: the config file, for error messages.

    Raises:
        ConfigError: naming the AWML field that is missing, unevaluable, of an unsupported
            type, or inconsistent with the rest of the config.
    """
    root = _Section(cfg, "", source)
    model, _ = root.part("model")

    # geometry: the voxel layer, else the top-level variables -------------------------
    pre, _ = model.part("data_preprocessor", default_type="Det3DDataPreprocessor")
    if pre.get("voxel", False) is not True:
        raise pre.error("voxel", "must be True: CenterPoint pillars need voxelization")
    if pre.get("voxel_type", "hard") != "hard":
        raise pre.error("voxel_type", f"= {pre.get('voxel_type')!r} is not supported; supported: 'hard'")
    layer = pre.section("voxel_layer")
    pc_range = layer.number_list("point_cloud_range", root.get("point_cloud_range", _MISSING))
    voxel_size = layer.number_list("voxel_size", root.get("voxel_size", _MISSING))
    max_voxels = layer.get("max_voxels")
    if isinstance(max_voxels, (list, tuple)):  # (train, test)
        if len(max_voxels) != 2:
            raise layer.error("max_voxels", f"= {max_voxels!r} must be an int or a (train, test) pair")
        max_voxels = max_voxels[1]
    if not isinstance(max_voxels, int) or isinstance(max_voxels, bool):
        raise layer.error("max_voxels", f"= {max_voxels!r} must be an int or a (train, test) pair of ints")
    if len(pc_range) != 6 or len(voxel_size) != 3:
        raise layer.error("voxel_size", f"= {voxel_size} with point_cloud_range = {pc_range}: need 3 and 6 values")
    voxelization = {"point_cloud_range": pc_range, "voxel_size": voxel_size,
                    "max_num_points": int(layer.get("max_num_points")), "max_voxels": max_voxels}
    try:  # the grid must be valid before the restated shapes are checked against it
        VoxelizationConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in voxelization.items()}).validate()
    except ConfigError as exc:
        raise ConfigError(f"AWML config {source}: {exc} (read from '{layer.path}')") from exc
    grid = [round((pc_range[i + 3] - pc_range[i]) / voxel_size[i]) for i in range(3)]

    # voxel encoder -------------------------------------------------------------------
    enc, enc_meaning = model.part("pts_voxel_encoder")
    if enc.get("mode", "max") != "max":
        raise enc.error("mode", f"= {enc.get('mode')!r} is not supported; supported: 'max'")
    feat_channels = enc.number_list("feat_channels", [64], int)
    with_voxel_center = bool(enc.get("with_voxel_center", True))
    if with_voxel_center:  # the encoder computes pillar centres from its own copy of the geometry
        for key, mmdet3d_default, ours in (("voxel_size", [0.2, 0.2, 4], voxel_size),
                                           ("point_cloud_range", [0, -40, -3, 70.4, 40, 1], pc_range)):
            _same(enc, key, enc.number_list(key, mmdet3d_default), ours, "the voxel layer's value")
    voxel_encoder = {
        "in_channels": int(enc.get("in_channels", 4)),
        "feat_channels": feat_channels,
        "with_distance": bool(enc.get("with_distance", False)),
        "with_cluster_center": bool(enc.get("with_cluster_center", True)),
        "with_voxel_center": with_voxel_center,
        "legacy": bool(enc.get("legacy", True)),
        **enc_meaning,
    }
    voxel_encoder["norm_eps"], voxel_encoder["norm_momentum"] = _batch_norm(
        enc, "norm_cfg", {"type": "BN1d", "eps": 1e-3, "momentum": 0.01}, "BN1d")

    # scatter: no weights, only restated shapes ----------------------------------------
    if model.has("pts_middle_encoder"):
        mid, _ = model.part("pts_middle_encoder")
        if mid.has("in_channels") and int(mid.get("in_channels")) != feat_channels[-1]:
            raise mid.error("in_channels", f"= {mid.get('in_channels')} must equal the voxel encoder's last feat_channels = {feat_channels[-1]}")
        if mid.has("output_shape"):
            _same(mid, "output_shape", mid.number_list("output_shape"), [grid[1], grid[0]], "the voxel grid (ny, nx)")

    # backbone and neck ---------------------------------------------------------------
    bb, _ = model.part("pts_backbone")
    _require_no_bias(bb, "conv_cfg", {"type": "Conv2d", "bias": False})
    backbone = {
        "in_channels": int(bb.get("in_channels", 128)),
        "out_channels": bb.number_list("out_channels", [128, 128, 256], int),
        "layer_nums": bb.number_list("layer_nums", [3, 5, 5], int),
        "layer_strides": bb.number_list("layer_strides", [2, 2, 2], int),
    }
    backbone["norm_eps"], backbone["norm_momentum"] = _batch_norm(
        bb, "norm_cfg", {"type": "BN", "eps": 1e-3, "momentum": 0.01}, "BN2d")

    nk, _ = model.part("pts_neck")
    _require_no_bias(nk, "upsample_cfg", {"type": "deconv", "bias": False})
    _require_no_bias(nk, "conv_cfg", {"type": "Conv", "bias": False})
    neck = {
        "in_channels": nk.number_list("in_channels", [128, 128, 256], int),
        "out_channels": nk.number_list("out_channels", [256, 256, 256], int),
        "upsample_strides": nk.number_list("upsample_strides", [1, 2, 4]),
        "use_conv_for_no_stride": bool(nk.get("use_conv_for_no_stride", False)),
    }
    neck["norm_eps"], neck["norm_momentum"] = _batch_norm(
        nk, "norm_cfg", {"type": "BN", "eps": 1e-3, "momentum": 0.01}, "BN2d")

    # head ------------------------------------------------------------------------------
    hd, _ = model.part("pts_bbox_head")
    head_in = hd.get("in_channels", [128])
    head_in = sum(hd.number_list("in_channels", kind=int)) if isinstance(head_in, (list, tuple)) else head_in
    tasks, class_names = [], []
    task_list = hd.get("tasks")
    if not isinstance(task_list, (list, tuple)) or not task_list:
        raise hd.error("tasks", f"= {task_list!r} must be a non-empty list of dict(num_class=..., class_names=[...])")
    for i, task in enumerate(task_list):
        t = _Section(task, hd.field(f"tasks[{i}]"), source) if isinstance(task, Mapping) else None
        if t is None:
            raise hd.error(f"tasks[{i}]", "must be a dict(num_class=..., class_names=[...])")
        names = [str(n) for n in t.get("class_names")]
        if t.has("num_class") and int(t.get("num_class")) != len(names):
            raise t.error("num_class", f"= {t.get('num_class')} but class_names has {len(names)} entries")
        tasks.append({"class_names": names})
        class_names.extend(names)
    if root.has("class_names") and not isinstance(cfg["class_names"], Unresolved):
        if [str(n) for n in root.get("class_names")] != class_names:
            raise root.error("class_names", f"= {root.get('class_names')} must list the head tasks' classes in order: {class_names}")

    common = hd.section("common_heads", {})
    common_heads = []
    for head_name in common.data:
        value = common.get(head_name)
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise common.error(head_name, f"= {value!r} must be (channels, num_conv)")
        common_heads.append([str(head_name), int(value[0]), int(value[1])])
    if [h[0] for h in common_heads] != list(REGRESSION_HEADS):
        raise hd.error("common_heads", f"has heads {[h[0] for h in common_heads]}; supported: exactly {list(REGRESSION_HEADS)} in this order")

    default_separate = {"type": "SeparateHead", "init_bias": -2.19, "final_kernel": 3}
    sep, _ = hd.part("separate_head") if hd.has("separate_head") else (_Section(default_separate, hd.field("separate_head"), source), {})
    head_norm = _batch_norm(hd, "norm_cfg", {"type": "BN2d"}, "BN2d")
    sep_norm = _batch_norm(sep, "norm_cfg", {"type": "BN2d"}, "BN2d")
    if head_norm != sep_norm:
        raise sep.error("norm_cfg", f"(eps, momentum) = {sep_norm} must equal the head's norm_cfg {head_norm}")
    head = {
        "in_channels": int(head_in),
        "share_conv_channel": int(hd.get("share_conv_channel", 64)),
        "tasks": tasks,
        "common_heads": common_heads,
        "heatmap_num_conv": int(hd.get("num_heatmap_convs", 2)),
        "head_conv": int(sep.get("head_conv", 64)),
        "final_kernel": int(sep.get("final_kernel", 1)),
        "init_bias": float(sep.get("init_bias", -2.19)),
        "norm_bbox": bool(hd.get("norm_bbox", True)),
        "norm_eps": head_norm[0],
        "norm_momentum": head_norm[1],
    }

    # decoding and NMS ------------------------------------------------------------------
    coder, _ = hd.part("bbox_coder")
    if int(coder.get("code_size", 9)) != 9:
        raise coder.error("code_size", f"= {coder.get('code_size')} is not supported; boxes need 9 values (with velocity)")
    _same(coder, "pc_range", coder.number_list("pc_range")[:2], pc_range[:2], "the voxel layer's point_cloud_range[:2]")
    _same(coder, "voxel_size", coder.number_list("voxel_size")[:2], voxel_size[:2], "the voxel layer's voxel_size[:2]")
    post_center_range = coder.get("post_center_range", None)
    score_threshold = coder.get("score_threshold", None)
    out_size_factor = int(coder.get("out_size_factor"))
    decode = {
        "max_num": int(coder.get("max_num", 100)),
        # mmdet3d skips the filter when the value is None: no score passes below 0, no centre lies outside ±inf
        "score_threshold": 0.0 if score_threshold is None else float(score_threshold),
        "post_center_range": [-math.inf] * 3 + [math.inf] * 3 if post_center_range is None else coder.number_list("post_center_range"),
        "out_size_factor": out_size_factor,
    }

    test = model.section("test_cfg").section("pts")
    if test.has("out_size_factor") and int(test.get("out_size_factor")) != out_size_factor:
        raise test.error("out_size_factor", f"= {test.get('out_size_factor')} disagrees with the bbox coder's {out_size_factor}")
    if test.has("grid_size"):
        _same(test, "grid_size", test.number_list("grid_size"), grid, "the grid of point_cloud_range / voxel_size")
    nms = {
        "nms_type": str(test.get("nms_type")),
        "min_radius": test.number_list("min_radius"),
        "post_max_size": int(test.get("post_max_size")),
    }

    data = {
        "name": name,
        "class_names": class_names,
        "points": _pipeline_points(root, voxel_encoder["in_channels"]),
        "voxelization": voxelization,
        "voxel_encoder": voxel_encoder,
        "backbone": backbone,
        "neck": neck,
        "head": head,
        "decode": decode,
        "nms": nms,
    }
    try:
        return ModelConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"AWML config {source}: {exc}") from exc
