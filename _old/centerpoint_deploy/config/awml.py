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

_PFN_ARGS = frozenset({"in_channels", "feat_channels", "with_distance", "with_cluster_center", "with_voxel_center",
                       "voxel_size", "point_cloud_range", "norm_cfg", "mode", "legacy"})
_HEAD_ARGS = frozenset({"in_channels", "tasks", "bbox_coder", "common_heads", "loss_cls", "loss_bbox", "separate_head",
                        "share_conv_channel", "num_heatmap_convs", "conv_cfg", "norm_cfg", "bias", "norm_bbox",
                        "train_cfg", "test_cfg", "init_cfg"})
_DETECTOR_ARGS = frozenset({"pts_voxel_encoder", "pts_middle_encoder", "pts_fusion_layer", "img_backbone",
                            "pts_backbone", "img_neck", "pts_neck", "pts_bbox_head", "img_roi_head", "img_rpn_head",
                            "train_cfg", "test_cfg", "init_cfg", "data_preprocessor"})

#: Keyword arguments the constructor of each ``type`` accepts (besides ``type``), from
#: mmdet3d 1.x and AWML's ``projects/CenterPoint``. mmdet3d raises TypeError for any other
#: key, so a typo such as ``with_distanse`` is refused here too. ``SeparateHead`` and its
#: twins take ``**kwargs`` and ignore what they do not know, so their keys are not checked;
#: nor are those of the AWML ``CenterPointONNX`` detector, whose extra arguments vary.
ACCEPTED_ARGS: dict[str, frozenset[str]] = {
    "CenterPoint": _DETECTOR_ARGS,
    "Det3DDataPreprocessor": frozenset({
        "voxel", "voxel_type", "voxel_layer", "batch_first", "max_voxels", "mean", "std", "pad_size_divisor",
        "pad_value", "pad_mask", "mask_pad_value", "pad_seg", "seg_pad_value", "bgr_to_rgb", "rgb_to_bgr",
        "boxtype2tensor", "non_blocking", "batch_augments"}),
    "voxel_layer": frozenset({"point_cloud_range", "max_num_points", "voxel_size", "grid_shape", "max_voxels",
                              "deterministic"}),
    "PillarFeatureNet": _PFN_ARGS,
    "PillarFeatureNetONNX": _PFN_ARGS | {"frozen_stages"},
    "BackwardPillarFeatureNet": _PFN_ARGS | {"frozen_stages"},
    "BackwardPillarFeatureNetONNX": _PFN_ARGS | {"frozen_stages"},
    "PointPillarsScatter": frozenset({"in_channels", "output_shape"}),
    "SECOND": frozenset({"in_channels", "out_channels", "layer_nums", "layer_strides", "norm_cfg", "conv_cfg",
                         "init_cfg", "pretrained"}),
    "SECONDFPN": frozenset({"in_channels", "out_channels", "upsample_strides", "norm_cfg", "upsample_cfg",
                            "conv_cfg", "use_conv_for_no_stride", "init_cfg"}),
    "CenterHead": _HEAD_ARGS,
    "CenterHeadONNX": _HEAD_ARGS | {"rot_y_axis_reference"},
    "CenterPointBBoxCoder": frozenset({"pc_range", "out_size_factor", "voxel_size", "post_center_range", "max_num",
                                       "score_threshold", "code_size"}),
    "LoadPointsFromFile": frozenset({"coord_type", "load_dim", "use_dim", "shift_height", "use_color",
                                     "norm_intensity", "norm_elongation", "backend_args", "file_client_args"}),
    "LoadPointsFromMultiSweeps": frozenset({"sweeps_num", "load_dim", "use_dim", "backend_args", "file_client_args",
                                            "pad_empty_sweeps", "remove_close", "test_mode"}),
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
        sec.check_keys(type_name)
        return sec, AWML_TYPES[type_name][1]

    def check_keys(self, type_name: str) -> None:
        """Refuse keys the constructor of ``type_name`` does not accept (see :data:`ACCEPTED_ARGS`)."""
        accepted = ACCEPTED_ARGS.get(type_name)
        if accepted is None:
            return
        unknown = sorted(str(k) for k in self.data if k != "type" and k not in accepted)
        if unknown:
            raise self.error(unknown[0], f"is not an argument of {type_name} (mmdet3d raises TypeError for it); "
                                         f"allowed: {', '.join(sorted(accepted))}")

    def integer(self, key: str, default: Any = _MISSING) -> int:
        """An int field; floats (even 5.0), bools and strings are refused, not converted."""
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"= {value!r:.80} must be an integer (got {type(value).__name__})")
        return value

    def real(self, key: str, default: Any = _MISSING) -> float:
        """A number field (int or float; bools and strings refused)."""
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"= {value!r:.80} must be a number (got {type(value).__name__})")
        if isinstance(value, int) and abs(value) > 1e300:  # float() would overflow
            raise self.error(key, f"= an integer of {value.bit_length()} bits; allowed: at most 1e300 in magnitude")
        return float(value)

    def flag(self, key: str, default: Any = _MISSING) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"= {value!r:.80} must be True or False (got {type(value).__name__})")
        return value

    def text(self, key: str, default: Any = _MISSING) -> str:
        value = self.get(key, default)
        if not isinstance(value, str):
            raise self.error(key, f"= {value!r:.80} must be a string (got {type(value).__name__})")
        return value

    def names(self, key: str, default: Any = _MISSING) -> list[str]:
        """A list of strings; a bare string (which would split into letters) is refused."""
        value = self.get(key, default)
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise self.error(key, f"= {value!r:.80} must be a list of strings")
        return list(value)

    def number_list(self, key: str, default: Any = _MISSING, kind: type = float) -> list[Any]:
        """A list of numbers (a bare number is a list of one); ``kind=int`` refuses floats."""
        value = self.get(key, default)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        allowed = (int,) if kind is int else (int, float)
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, allowed) and not isinstance(v, bool) and not (isinstance(v, int) and abs(v) > 1e300)
            for v in value
        ):
            raise self.error(key, f"= {value!r:.80} must be a list of {'integers' if kind is int else 'numbers'}")
        return [kind(v) for v in value]


def _batch_norm(sec: _Section, key: str, default: dict[str, Any], dims: str) -> tuple[float, float]:
    """(eps, momentum) of a ``norm_cfg``; torch's BatchNorm defaults fill what it leaves out."""
    norm = sec.section(key, default)
    norm_type = norm.get("type", default["type"])
    if norm_type not in _BATCH_NORMS[dims]:
        raise norm.error("type", f"= {norm_type!r:.80} is not supported; supported: {', '.join(_BATCH_NORMS[dims])}")
    unknown = sorted(str(k) for k in norm.data if k not in ("type", "eps", "momentum", "requires_grad"))
    if unknown:
        raise norm.error(unknown[0], "is not an argument of a BatchNorm norm_cfg; allowed: eps, momentum, requires_grad")
    return norm.real("eps", 1e-5), norm.real("momentum", 0.1)


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
                    loader.check_keys(step_type)
                elif step_type == "LoadPointsFromMultiSweeps":
                    sweeps = _Section(step, f"{owner.field(key)}[{i}]", root.source)
                    sweeps.check_keys(step_type)
            break

    if loader is not None:  # mmdet3d LoadPointsFromFile defaults: load_dim=6, use_dim=[0, 1, 2]
        load_dim = loader.integer("load_dim", 6)
        use_dim = _use_dim(loader, "use_dim", [0, 1, 2])
    else:
        load_dim = root.integer("point_load_dim", 5)
        use_dim = _use_dim(root, "point_use_dim", list(range(in_channels)))
    sweeps_num = 0
    if sweeps is not None:  # mmdet3d LoadPointsFromMultiSweeps defaults: sweeps_num=10, use_dim=[0, 1, 2, 4]
        sweeps_num = sweeps.integer("sweeps_num", 10)
        if sweeps.integer("load_dim", 5) != load_dim:
            raise sweeps.error("load_dim", f"= {sweeps.get('load_dim', 5)} must equal the key frame's load_dim = {load_dim}")
        picked = _use_dim(sweeps, "use_dim", [0, 1, 2, 4])
        if any(not 0 <= d < len(use_dim) for d in picked):
            raise sweeps.error("use_dim", f"= {picked} indexes past the {len(use_dim)} columns that LoadPointsFromFile keeps")
        use_dim = [use_dim[d] for d in picked]
    elif loader is None:
        sweeps_num = root.integer("sweeps_num", 0)
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
    model, _ = root.part("model")  # checks the detector's keys for mmdet3d's CenterPoint

    # geometry: the voxel layer, else the top-level variables -------------------------
    pre, _ = model.part("data_preprocessor", default_type="Det3DDataPreprocessor")
    if pre.get("voxel", False) is not True:
        raise pre.error("voxel", "must be True: CenterPoint pillars need voxelization")
    if pre.get("voxel_type", "hard") != "hard":
        raise pre.error("voxel_type", f"= {pre.get('voxel_type')!r} is not supported; supported: 'hard'")
    layer = pre.section("voxel_layer")
    layer.check_keys("voxel_layer")
    pc_range = layer.number_list("point_cloud_range", root.get("point_cloud_range", _MISSING))
    voxel_size = layer.number_list("voxel_size", root.get("voxel_size", _MISSING))
    max_voxels = layer.get("max_voxels")
    if isinstance(max_voxels, (list, tuple)):  # (train, test)
        if len(max_voxels) != 2:
            raise layer.error("max_voxels", f"= {max_voxels!r} must be an int or a (train, test) pair")
        max_voxels = max_voxels[1]
    if not isinstance(max_voxels, int) or isinstance(max_voxels, bool):
        raise layer.error("max_voxels", f"= {max_voxels!r:.80} must be an int or a (train, test) pair of ints")
    if len(pc_range) != 6 or len(voxel_size) != 3:
        raise layer.error("voxel_size", f"= {voxel_size} with point_cloud_range = {pc_range}: need 3 and 6 values")
    voxelization = {"point_cloud_range": pc_range, "voxel_size": voxel_size,
                    "max_num_points": layer.integer("max_num_points"), "max_voxels": max_voxels}
    try:  # the grid must be valid before the restated shapes are checked against it
        VoxelizationConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in voxelization.items()}).validate()
    except ConfigError as exc:
        raise ConfigError(f"AWML config {source}: {exc} (read from '{layer.path}')") from exc
    grid = [round((pc_range[i + 3] - pc_range[i]) / voxel_size[i]) for i in range(3)]

    # voxel encoder -------------------------------------------------------------------
    enc, enc_meaning = model.part("pts_voxel_encoder")
    if enc.text("mode", "max") != "max":
        raise enc.error("mode", f"= {enc.get('mode')!r} is not supported; supported: 'max'")
    feat_channels = enc.number_list("feat_channels", [64], int)
    if not feat_channels:
        raise enc.error("feat_channels", "= [] must be a non-empty list of integers (the PFN layer widths)")
    with_voxel_center = enc.flag("with_voxel_center", True)
    if with_voxel_center:  # the encoder computes pillar centres from its own copy of the geometry
        for key, mmdet3d_default, ours in (("voxel_size", [0.2, 0.2, 4], voxel_size),
                                           ("point_cloud_range", [0, -40, -3, 70.4, 40, 1], pc_range)):
            _same(enc, key, enc.number_list(key, mmdet3d_default), ours, "the voxel layer's value")
    voxel_encoder = {
        "in_channels": enc.integer("in_channels", 4),
        "feat_channels": feat_channels,
        "with_distance": enc.flag("with_distance", False),
        "with_cluster_center": enc.flag("with_cluster_center", True),
        "with_voxel_center": with_voxel_center,
        "legacy": enc.flag("legacy", True),
        **enc_meaning,
    }
    voxel_encoder["norm_eps"], voxel_encoder["norm_momentum"] = _batch_norm(
        enc, "norm_cfg", {"type": "BN1d", "eps": 1e-3, "momentum": 0.01}, "BN1d")

    # scatter: no weights, only restated shapes ----------------------------------------
    if model.has("pts_middle_encoder"):
        mid, _ = model.part("pts_middle_encoder")
        if mid.has("in_channels") and mid.integer("in_channels") != feat_channels[-1]:
            raise mid.error("in_channels", f"= {mid.get('in_channels')} must equal the voxel encoder's last feat_channels = {feat_channels[-1]}")
        if mid.has("output_shape"):
            _same(mid, "output_shape", mid.number_list("output_shape"), [grid[1], grid[0]], "the voxel grid (ny, nx)")

    # backbone and neck ---------------------------------------------------------------
    bb, _ = model.part("pts_backbone")
    _require_no_bias(bb, "conv_cfg", {"type": "Conv2d", "bias": False})
    backbone = {
        "in_channels": bb.integer("in_channels", 128),
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
        "use_conv_for_no_stride": nk.flag("use_conv_for_no_stride", False),
    }
    neck["norm_eps"], neck["norm_momentum"] = _batch_norm(
        nk, "norm_cfg", {"type": "BN", "eps": 1e-3, "momentum": 0.01}, "BN2d")

    # head ------------------------------------------------------------------------------
    hd, _ = model.part("pts_bbox_head")
    head_in = sum(hd.number_list("in_channels", [128], int))  # an int or a list of ints (summed)
    tasks, class_names = [], []
    task_list = hd.get("tasks")
    if not isinstance(task_list, (list, tuple)) or not task_list:
        raise hd.error("tasks", f"= {task_list!r} must be a non-empty list of dict(num_class=..., class_names=[...])")
    for i, task in enumerate(task_list):
        t = _Section(task, hd.field(f"tasks[{i}]"), source) if isinstance(task, Mapping) else None
        if t is None:
            raise hd.error(f"tasks[{i}]", "must be a dict(num_class=..., class_names=[...])")
        names = t.names("class_names")
        if t.has("num_class") and t.integer("num_class") != len(names):
            raise t.error("num_class", f"= {t.get('num_class')} but class_names has {len(names)} entries")
        tasks.append({"class_names": names})
        class_names.extend(names)
    if root.has("class_names") and not isinstance(cfg["class_names"], Unresolved):
        if root.names("class_names") != class_names:
            raise root.error("class_names", f"= {root.get('class_names')} must list the head tasks' classes in order: {class_names}")

    common = hd.section("common_heads", {})
    common_heads = []
    for head_name in common.data:
        value = common.get(head_name)
        if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise common.error(str(head_name), f"= {value!r:.80} must be (channels, num_conv), two integers")
        common_heads.append([str(head_name), value[0], value[1]])
    if [h[0] for h in common_heads] != list(REGRESSION_HEADS):
        raise hd.error("common_heads", f"has heads {[h[0] for h in common_heads]}; supported: exactly {list(REGRESSION_HEADS)} in this order")

    default_separate = {"type": "SeparateHead", "init_bias": -2.19, "final_kernel": 3}
    sep, _ = hd.part("separate_head") if hd.has("separate_head") else (_Section(default_separate, hd.field("separate_head"), source), {})
    head_norm = _batch_norm(hd, "norm_cfg", {"type": "BN2d"}, "BN2d")
    sep_norm = _batch_norm(sep, "norm_cfg", {"type": "BN2d"}, "BN2d")
    if head_norm != sep_norm:
        raise sep.error("norm_cfg", f"(eps, momentum) = {sep_norm} must equal the head's norm_cfg {head_norm}")
    head = {
        "in_channels": head_in,
        "share_conv_channel": hd.integer("share_conv_channel", 64),
        "tasks": tasks,
        "common_heads": common_heads,
        "heatmap_num_conv": hd.integer("num_heatmap_convs", 2),
        "head_conv": sep.integer("head_conv", 64),
        "final_kernel": sep.integer("final_kernel", 1),
        "init_bias": sep.real("init_bias", -2.19),
        "norm_bbox": hd.flag("norm_bbox", True),
        "norm_eps": head_norm[0],
        "norm_momentum": head_norm[1],
    }

    # decoding and NMS ------------------------------------------------------------------
    coder, _ = hd.part("bbox_coder")
    if coder.integer("code_size", 9) != 9:
        raise coder.error("code_size", f"= {coder.get('code_size')} is not supported; boxes need 9 values (with velocity)")
    _same(coder, "pc_range", coder.number_list("pc_range")[:2], pc_range[:2], "the voxel layer's point_cloud_range[:2]")
    _same(coder, "voxel_size", coder.number_list("voxel_size")[:2], voxel_size[:2], "the voxel layer's voxel_size[:2]")
    post_center_range = coder.get("post_center_range", None)
    score_threshold = coder.get("score_threshold", None)
    out_size_factor = coder.integer("out_size_factor")
    decode = {
        "max_num": coder.integer("max_num", 100),
        # mmdet3d skips the filter when the value is None: no score passes below 0, no centre lies outside ±inf
        "score_threshold": 0.0 if score_threshold is None else coder.real("score_threshold"),
        "post_center_range": [-math.inf] * 3 + [math.inf] * 3 if post_center_range is None else coder.number_list("post_center_range"),
        "out_size_factor": out_size_factor,
    }

    test = model.section("test_cfg").section("pts")
    if test.has("out_size_factor") and test.integer("out_size_factor") != out_size_factor:
        raise test.error("out_size_factor", f"= {test.get('out_size_factor')} disagrees with the bbox coder's {out_size_factor}")
    if test.has("grid_size"):
        _same(test, "grid_size", test.number_list("grid_size"), grid, "the grid of point_cloud_range / voxel_size")
    nms = {
        "nms_type": test.text("nms_type"),
        "min_radius": test.number_list("min_radius"),
        "post_max_size": test.integer("post_max_size"),
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
