"""The v4.1 bundle: writer/reader round trip, the validator against every broken file, the grid rule."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any, Callable

import jsonschema
import pytest
import yaml

from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.errors import BundleError, ConfigError, ExportError
from centerpoint_deploy.export.autoware_params import autoware_model_params, check_node_grid, node_grid_size
from centerpoint_deploy.export.bundle import (check_bundle, node_precision, publish_bundle, read_node_params,
                                              record_check, staged_bundle, write_node_params, write_thresholds)
from centerpoint_deploy.export.bundle_schema import (autoware_label, ml_package_document, parse_ml_package,
                                                     parse_remapper, remapper_document)
from centerpoint_deploy.export.manifest import CheckRecord, load_manifest, sha256_file
from centerpoint_deploy.export.onnx_export import ExportResult
from centerpoint_deploy.postprocess.node_params import ClassRemapper, NodePostprocessParams, ScoreThresholds

SCHEMA = json.loads((Path(__file__).parent / "data" / "ml_package.schema.json").read_text())
NAMES = ("car", "truck", "bus", "bicycle", "pedestrian")
ONNX = ("pts_voxel_encoder.onnx", "pts_backbone_neck_head.onnx")


def _params() -> NodePostprocessParams:
    """Non-default parameters: thresholds per class and bin, three bins, one remapping rule."""
    thresholds = ScoreThresholds(NAMES, (30.0, 60.0, 100.0),
                                 tuple(tuple(round(0.1 * (i + 1) + 0.05 * j, 2) for j in range(3)) for i in range(5)))
    allow = [[0] * 5 for _ in range(5)]
    low = [[0.0] * 5 for _ in range(5)]
    high = [[0.0] * 5 for _ in range(5)]
    allow[1][2], low[1][2], high[1][2] = 1, 10.0, float("inf")  # truck -> bus above 10 m²
    remapper = ClassRemapper(NAMES, tuple(map(tuple, allow)), tuple(map(tuple, low)), tuple(map(tuple, high)))
    return NodePostprocessParams(thresholds, (0.2, 0.25, 0.3, 0.35, 0.0), remapper=remapper)


def _publish(source: Path, out: Path, config: ModelConfig, **options: Any):
    """A bundle from already exported ONNX files (no re-export: fast)."""
    settings = dict(autoware_format="v4.1", precision="fp32", trt_precision="fp16", opset=17, rot_y_axis_reference=False,
                    simplified=False, checkpoint_sha256=None)
    with staged_bundle(out) as stage:
        for name in ONNX:
            shutil.copy(source / name, stage / name)
        return publish_bundle(stage, out, config, **{**settings, **options})


@pytest.fixture()
def bundle(plain_export: ExportResult, tmp_path: Path) -> Path:
    return Path(shutil.copytree(plain_export.manifest.deploy_dir, tmp_path / "bundle"))


# ----- writer and reader ------------------------------------------------------------------------

def test_round_trip_of_the_node_parameters(plain_export: ExportResult, tiny_config: ModelConfig, tmp_path: Path) -> None:
    params = _params()
    manifest = _publish(plain_export.manifest.deploy_dir, tmp_path / "b", tiny_config, params=params, trt_precision="fp32")
    assert read_node_params(tmp_path / "b") == params
    document = yaml.safe_load((tmp_path / "b" / "ml_package.param.yaml").read_text())
    p = document["/**"]["ros__parameters"]
    assert (p["version"], p["trt_precision"], p["encoder_onnx_path"], p["class_remapper_param_path"]) == \
        ("v4.1", "fp32", "pts_voxel_encoder.onnx", "detection_class_remapper.param.yaml")
    assert p["model_params"]["detection_score_thresholds"] == {
        "distance_bin_upper_limits": [30.0, 60.0, 100.0],
        "min_confidence_scores": {"CAR": [0.1, 0.15, 0.2], "TRUCK": [0.2, 0.25, 0.3], "BUS": [0.3, 0.35, 0.4],
                                  "BICYCLE": [0.4, 0.45, 0.5], "PEDESTRIAN": [0.5, 0.55, 0.6]}}
    assert p["model_params"]["yaw_norm_thresholds"] == [0.2, 0.25, 0.3, 0.35, 0.0]
    remap = yaml.safe_load((tmp_path / "b" / "detection_class_remapper.param.yaml").read_text())["/**"]["ros__parameters"]
    # The node's layout: flat row-major 8 x 8 over its labels; TRUCK (2) -> BUS (3) is entry 2 * 8 + 3.
    assert [i for i, v in enumerate(remap["allow_remapping_by_area_matrix"]) if v] == [19]
    assert (remap["min_area_matrix"][19], remap["max_area_matrix"][19]) == (10.0, float("inf"))
    assert len(remap["min_area_matrix"]) == len(remap["max_area_matrix"]) == 64
    assert manifest.files == {name: sha256_file(tmp_path / "b" / name) for name in manifest.files}
    jsonschema.validate(document, SCHEMA)


def test_default_bundle_is_the_nodes_defaults(bundle: Path, tiny_config: ModelConfig) -> None:
    assert read_node_params(bundle) == NodePostprocessParams.defaults(tiny_config.class_names)
    assert read_node_params(bundle).remapper.is_identity
    document = yaml.safe_load((bundle / "ml_package.param.yaml").read_text())
    jsonschema.validate(document, SCHEMA)
    assert check_bundle(bundle) == load_manifest(bundle)


def test_write_thresholds_revalidates_and_rehashes(bundle: Path) -> None:
    calibrated = ScoreThresholds(NAMES, (50.0, 90.0, 121.0, 200.0),
                                 tuple((0.4, 0.3, 0.2, 0.1) for _ in NAMES))
    before = load_manifest(bundle)
    manifest = write_thresholds(bundle, calibrated)
    assert read_node_params(bundle).thresholds == calibrated
    assert load_manifest(bundle) == manifest
    assert manifest.files["ml_package.param.yaml"] != before.files["ml_package.param.yaml"]
    assert manifest.files["ml_package.param.yaml"] == sha256_file(bundle / "ml_package.param.yaml")
    assert [p.name for p in bundle.iterdir() if p.name.startswith(".")] == []  # no staging left behind

    # The node replaces a threshold of 1.0 by 0 (keep everything): refused, nothing changes.
    written = (bundle / "ml_package.param.yaml").read_bytes()
    with pytest.raises(BundleError, match=r"min_confidence_scores.TRUCK' values must be in \[0, 1\)"):
        write_thresholds(bundle, ScoreThresholds(NAMES, (50.0,), ((0.5,), (1.0,), (0.5,), (0.5,), (0.5,))))
    with pytest.raises(BundleError, match="name classes"):
        write_thresholds(bundle, ScoreThresholds(("car",), (50.0,), ((0.5,),)))
    assert (bundle / "ml_package.param.yaml").read_bytes() == written
    assert load_manifest(bundle) == manifest


def test_write_node_params_refuses_an_edited_bundle(bundle: Path, tiny_config: ModelConfig) -> None:
    (bundle / "ml_package.param.yaml").write_text((bundle / "ml_package.param.yaml").read_text().replace("0.35", "0.3"))
    with pytest.raises(BundleError, match="ml_package.param.yaml changed after export"):
        write_node_params(bundle, NodePostprocessParams.defaults(tiny_config.class_names))


def test_record_check(bundle: Path) -> None:
    record = CheckRecord(True, "2026-12-01T00:00:00+00:00", "onnxruntime on 3 frames", {"mAP": 0.25, "NDS": 0.3})
    manifest = record_check(bundle, "evaluation.onnxruntime", record)
    assert load_manifest(bundle).checks == {"evaluation.onnxruntime": record} == manifest.checks
    (bundle / "pts_voxel_encoder.onnx").write_bytes(b"x")
    with pytest.raises(BundleError, match="pts_voxel_encoder.onnx changed after export"):
        record_check(bundle, "verification", record)  # an edited bundle is refused, not blessed


def test_legacy_bundle_has_no_node_parameters(plain_export: ExportResult, tiny_config: ModelConfig,
                                              tmp_path: Path) -> None:
    _publish(plain_export.manifest.deploy_dir, tmp_path / "b", tiny_config, autoware_format="legacy")
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["deploy_metadata.yaml", *sorted(ONNX),
                                                                  "tiny_ml_package.param.yaml"]
    document = yaml.safe_load((tmp_path / "b" / "tiny_ml_package.param.yaml").read_text())
    assert document["/**"]["ros__parameters"]["model_params"] == {"model_params_version": "1.0.0",
                                                                  **autoware_model_params(tiny_config)}
    with pytest.raises(BundleError, match="legacy bundle without the node's post-processing parameters"):
        read_node_params(tmp_path / "b")
    # Re-exporting in the other layout replaces the stale parameter file.
    _publish(plain_export.manifest.deploy_dir, tmp_path / "b", tiny_config)
    assert not (tmp_path / "b" / "tiny_ml_package.param.yaml").exists()
    assert load_manifest(tmp_path / "b").bundle_version == "v4.1"


def test_bundle_options() -> None:
    assert [node_precision(p) for p in ("fp32", "tf32", "fp16", "int8")] == ["fp32", "fp32", "fp16", "fp32"]
    with pytest.raises(ExportError, match="precision 'int4' has no trt_precision"):
        node_precision("int4")


def test_a_bundle_failing_its_checks_is_never_written(plain_export: ExportResult, tiny_config: ModelConfig,
                                                      tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="--autoware-format 'v3' is not one of"):
        _publish(plain_export.manifest.deploy_dir, tmp_path / "b", tiny_config, autoware_format="v3")
    with pytest.raises(ExportError, match="precision 'tf32' cannot be a v4.1 bundle's trt_precision"):
        _publish(plain_export.manifest.deploy_dir, tmp_path / "b", tiny_config, trt_precision="tf32")
    assert list(tmp_path.iterdir()) == []


def test_a_remapper_rule_the_node_cannot_express_is_refused() -> None:
    # barrier and cone are both UNKNOWN to the node: a rule between them has no place in its matrix.
    two_unknown = ClassRemapper(("car", "truck", "bus", "barrier", "cone"),
                                ((0,) * 5, (0,) * 5, (0,) * 5, (0, 0, 0, 0, 1), (0,) * 5))
    with pytest.raises(ConfigError, match="class 'barrier' shares the node's label UNKNOWN"):
        remapper_document(two_unknown)


# ----- the validator: every broken ml_package.param.yaml ---------------------------------------

def _good() -> dict[str, Any]:
    facts = {"class_names": ["CAR", "TRUCK", "BUS", "BICYCLE", "PEDESTRIAN"], "point_feature_size": 5,
             "max_voxel_size": 4000, "point_cloud_range": [-12.8, -12.8, -3.0, 12.8, 12.8, 5.0],
             "voxel_size": [0.4, 0.4, 8.0], "downsample_factor": 1, "encoder_in_feature_size": 11,
             "has_variance": False, "has_twist": True}
    return ml_package_document(facts, NodePostprocessParams.defaults(NAMES), "fp16")


Edit = Callable[[dict[str, Any]], None]


def _p(edit: Callable[[dict[str, Any]], Any]) -> Edit:
    return lambda d: edit(d["/**"]["ros__parameters"])


def _m(edit: Callable[[dict[str, Any]], Any]) -> Edit:
    return lambda d: edit(d["/**"]["ros__parameters"]["model_params"])


def _s(edit: Callable[[dict[str, Any]], Any]) -> Edit:
    return lambda d: edit(d["/**"]["ros__parameters"]["model_params"]["detection_score_thresholds"])


#: Broken files both our validator and the node's JSON schema refuse: (edit, key our error names).
BROKEN_FOR_BOTH: list[tuple[str, Edit, str]] = [
    ("no ros__parameters", lambda d: d.update({"/**": {}}), r"'/\*\*.ros__parameters' is missing"),
    ("missing version", _p(lambda p: p.pop("version")), "'version' is missing"),
    ("missing head path", _p(lambda p: p.pop("head_onnx_path")), "'head_onnx_path' is missing"),
    ("missing model_params", _p(lambda p: p.pop("model_params")), "'model_params' is missing"),
    ("missing yaw norm", _m(lambda m: m.pop("yaw_norm_thresholds")), "'model_params.yaw_norm_thresholds' is missing"),
    ("missing has_twist", _m(lambda m: m.pop("has_twist")), "'model_params.has_twist' is missing"),
    ("missing bins", _s(lambda s: s.pop("distance_bin_upper_limits")), "distance_bin_upper_limits' is missing"),
    ("version v4.0", _p(lambda p: p.update(version="v4.0")), "'version' = 'v4.0': the node reads"),
    ("version v5.1", _p(lambda p: p.update(version="v5.1")), "'version' = 'v5.1': the node reads"),
    ("version v3.9", _p(lambda p: p.update(version="v3.9")), "'version' = 'v3.9'"),
    ("version 4.1 unquoted", _p(lambda p: p.update(version=4.1)), "'version' must be a string"),
    ("version v4", _p(lambda p: p.update(version="v4")), "is not of the form"),
    ("version v4.1.0", _p(lambda p: p.update(version="v4.1.0")), "is not of the form"),
    ("version V4.1", _p(lambda p: p.update(version="V4.1")), "is not of the form"),
    ("precision int8", _p(lambda p: p.update(trt_precision="int8")), "'trt_precision' = 'int8' is not one of"),
    ("path not a string", _p(lambda p: p.update(encoder_onnx_path=3)), "'encoder_onnx_path' must be a non-empty"),
    ("duplicate classes", _m(lambda m: m.update(class_names=["CAR", "CAR", "BUS", "BICYCLE", "PEDESTRIAN"])),
     "'model_params.class_names' must be unique"),
    ("no classes", _m(lambda m: m.update(class_names=[])), "'model_params.class_names' must be a non-empty list"),
    ("downsample 0", _m(lambda m: m.update(downsample_factor=0)), "'model_params.downsample_factor' must be >= 1"),
    ("feature size 4.5", _m(lambda m: m.update(point_feature_size=4.5)), "'model_params.point_feature_size' must be an"),
    ("has_twist 'yes'", _m(lambda m: m.update(has_twist="yes")), "'model_params.has_twist' must be true or false"),
    ("range of 5", _m(lambda m: m.update(point_cloud_range=[-1.0, -1.0, -1.0, 1.0, 1.0])), "has 5 values, needs 6"),
    ("voxel of 2", _m(lambda m: m.update(voxel_size=[0.4, 0.4])), "'model_params.voxel_size' has 2 values, needs 3"),
    ("yaw norm 1.5", _m(lambda m: m.update(yaw_norm_thresholds=[0.3, 0.3, 1.5, 0.3, 0.0])),
     r"'model_params.yaw_norm_thresholds' values must be in \[0, 1\)"),
    ("yaw norm -0.1", _m(lambda m: m.update(yaw_norm_thresholds=[0.3, 0.3, -0.1, 0.3, 0.0])), "must be in"),
    ("score 1.2", _s(lambda s: s["min_confidence_scores"].update(BUS=[0.35, 1.2, 0.35, 0.35])),
     r"'model_params.detection_score_thresholds.min_confidence_scores.BUS' values must be in \[0, 1\)"),
    ("score -0.5", _s(lambda s: s["min_confidence_scores"].update(CAR=[-0.5, 0.35, 0.35, 0.35])), "CAR' values must"),
    ("no bins", _s(lambda s: s.update(distance_bin_upper_limits=[])), "strictly ascending"),
    ("score as text", _s(lambda s: s["min_confidence_scores"].update(CAR="0.35")), "CAR' must be a list"),
]

#: Broken files only our validator refuses: the JSON schema cannot relate one key to another
#: (lengths per class / bin), nor say what the node does silently (1.0 -> 0, ints as doubles).
BROKEN_FOR_OURS_ONLY: list[tuple[str, Edit, str]] = [
    ("4 yaw norms for 5 classes", _m(lambda m: m.update(yaw_norm_thresholds=[0.3, 0.3, 0.3, 0.3])),
     "'model_params.yaw_norm_thresholds' has 4 values, needs 5"),
    ("3 scores for 4 bins", _s(lambda s: s["min_confidence_scores"].update(CAR=[0.35, 0.35, 0.35])),
     "min_confidence_scores.CAR' has 3 values, needs 4"),
    ("a class without scores", _s(lambda s: s["min_confidence_scores"].pop("TRUCK")),
     "min_confidence_scores.TRUCK' is missing"),
    ("scores for an unknown class", _s(lambda s: s["min_confidence_scores"].update(TRAILER=[0.35] * 4)),
     "min_confidence_scores.TRAILER' is not a key the node reads"),
    ("score 1.0 (the node keeps everything)", _s(lambda s: s["min_confidence_scores"].update(CAR=[1.0, 0.35, 0.35, 0.35])),
     "the node replaces any other value by 0"),
    ("yaw norm 1.0", _m(lambda m: m.update(yaw_norm_thresholds=[0.3, 0.3, 0.3, 0.3, 1.0])), "must be in"),
    ("lower-case classes", _m(lambda m: m.update(class_names=["car", "truck", "bus", "bicycle", "pedestrian"])),
     "'model_params.class_names' must be upper case"),
    ("integer range", _m(lambda m: m.update(point_cloud_range=[-12, -12, -3, 12, 12, 5])),
     "'model_params.point_cloud_range' must hold finite decimal numbers .* write 1.0"),
    ("range min >= max", _m(lambda m: m.update(point_cloud_range=[12.8, -12.8, -3.0, -12.8, 12.8, 5.0])),
     "needs min < max"),
    ("negative voxel", _m(lambda m: m.update(voxel_size=[-0.4, 0.4, 8.0])), "must be positive"),
    ("bins descending", _s(lambda s: s.update(distance_bin_upper_limits=[90.0, 50.0, 121.0, 200.0])),
     "strictly ascending"),
    ("absolute path", _p(lambda p: p.update(head_onnx_path="/opt/model/head.onnx")), "must be a path inside the bundle"),
    ("path out of the bundle", _p(lambda p: p.update(class_remapper_param_path="../x.yaml")), "inside the bundle"),
    ("legacy key", _m(lambda m: m.update(model_params_version="1.0.0")),
     "'model_params.model_params_version' is not a key the node reads"),
    ("typo key", _p(lambda p: p.update(trt_precison="fp16")), "'trt_precison' is not a key the node reads"),
    ("version 4.1 string", _p(lambda p: p.update(version="4.01")), None),  # both accept, like the node
]


@pytest.mark.parametrize(("name", "edit", "message"), BROKEN_FOR_BOTH, ids=[c[0] for c in BROKEN_FOR_BOTH])
def test_both_validators_refuse(name: str, edit: Edit, message: str) -> None:
    document = copy.deepcopy(_good())
    edit(document)
    with pytest.raises(BundleError, match=f"^ml_package.param.yaml: .*{message}"):
        parse_ml_package(document)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, SCHEMA)


@pytest.mark.parametrize(("name", "edit", "message"), BROKEN_FOR_OURS_ONLY, ids=[c[0] for c in BROKEN_FOR_OURS_ONLY])
def test_only_our_validator_refuses(name: str, edit: Edit, message: str | None) -> None:
    document = copy.deepcopy(_good())
    edit(document)
    jsonschema.validate(document, SCHEMA)  # passes the schema: what the JSON schema cannot say
    if message is None:
        parse_ml_package(document)
        return
    with pytest.raises(BundleError, match=f"^ml_package.param.yaml: .*{message}"):
        parse_ml_package(document)


def test_the_good_document_passes_both() -> None:
    jsonschema.validate(_good(), SCHEMA)
    package = parse_ml_package(_good())
    assert package.version == "v4.1" and package.thresholds.min_confidence_scores[0] == (0.35,) * 4


# ----- the class remapper file -----------------------------------------------------------------

def _remapper(allow: list[int] | None = None, low: list[Any] | None = None,
              high: list[Any] | None = None) -> dict[str, Any]:
    return {"/**": {"ros__parameters": {"allow_remapping_by_area_matrix": allow if allow is not None else [0] * 64,
                                        "min_area_matrix": low if low is not None else [0.0] * 64,
                                        "max_area_matrix": high if high is not None else [0.0] * 64}}}


def _allow(*indices: int, size: int = 64) -> list[int]:
    return [1 if i in indices else 0 for i in range(size)]


def test_remapper_round_trip_and_labels() -> None:
    assert [autoware_label(n) for n in ("car", "TRUCK", "bus", "trailer", "motorbike", "bicycle", "pedestrian", "cone")] \
        == [1, 2, 3, 4, 5, 6, 7, 0]
    remapper = _params().remapper
    assert parse_remapper(remapper_document(remapper), NAMES) == remapper
    assert parse_remapper(_remapper(), NAMES).is_identity
    # A smaller square matrix is what the node accepts too (labels past it are left alone).
    assert parse_remapper(_remapper([0] * 16, [0.0] * 16, [0.0] * 16), NAMES).is_identity


@pytest.mark.parametrize(("document", "message"), [
    (_remapper(_allow(size=63), [0.0] * 63, [0.0] * 63), "has 63 values; the node needs a non-empty square matrix"),
    (_remapper([], [], []), "non-empty square matrix"),
    (_remapper(low=[0.0] * 49), "'min_area_matrix' has 49 values, allow_remapping_by_area_matrix 64"),
    (_remapper([2] + [0] * 63), "must be a list of 0 / 1 integers"),
    (_remapper(low=[0] * 64), "'min_area_matrix' must hold decimal numbers"),
    (_remapper(high=[float("nan")] * 64), "'max_area_matrix' must hold decimal numbers"),
    (_remapper(_allow(2 * 8 + 4)), r"allow_remapping_by_area_matrix\[20\]' remaps TRUCK -> TRAILER, a label none of "
                                   r"the model's classes"),
    (_remapper(_allow(5 * 8 + 6)), "remaps MOTORCYCLE -> BICYCLE, a label none"),
    ({"/**": {"ros__parameters": {"allow_remapping_by_area_matrix": [0] * 64, "min_area_matrix": [0.0] * 64}}},
     "'max_area_matrix' is missing"),
    ({"/**": {"ros__parameters": {**_remapper()["/**"]["ros__parameters"], "labels": []}}},
     "'labels' is not a key the node reads"),
    ({"remapper": {}}, r"'/\*\*.ros__parameters' is missing"),
])
def test_broken_remappers_are_refused(document: dict[str, Any], message: str) -> None:
    with pytest.raises(BundleError, match=f"^detection_class_remapper.param.yaml: .*{message}"):
        parse_remapper(document, NAMES)


def test_remapper_order_the_model_cannot_follow() -> None:
    # CAR may become BUS or TRUCK: the node tries TRUCK (label 2) first, a model listing bus
    # before truck would try BUS first.
    with pytest.raises(BundleError, match="CAR may become several classes whose label order differs"):
        parse_remapper(_remapper(_allow(1 * 8 + 2, 1 * 8 + 3)), ("car", "bus", "truck"))
    assert not parse_remapper(_remapper(_allow(1 * 8 + 2, 1 * 8 + 3)), NAMES).is_identity


# ----- the node's grid rule --------------------------------------------------------------------

def test_node_grid_matches_the_presets() -> None:
    from centerpoint_deploy.config import load_config

    for preset in ("tiny", "demo", "j6gen2_base", "j6gen2_base_amp"):
        config = load_config(preset)
        assert node_grid_size(config.voxelization.point_cloud_range, config.voxelization.voxel_size) == config.grid_size
        check_node_grid(config)


def test_a_grid_the_node_computes_differently_is_refused(tiny_model, tiny_config: ModelConfig, tmp_path: Path) -> None:
    # (7.2f - -7.2f) / 0.3f = 47.99998 in float32: the node truncates to 47, the decimal range is 48 voxels.
    vox = dataclasses.replace(tiny_config.voxelization, point_cloud_range=(-7.2, -7.2, -3.0, 7.2, 7.2, 5.0),
                              voxel_size=(0.3, 0.3, 8.0))
    config = dataclasses.replace(tiny_config, voxelization=vox)
    assert config.grid_size[:2] == (48, 48) and node_grid_size(vox.point_cloud_range, vox.voxel_size)[:2] == (47, 47)
    from centerpoint_deploy.export.onnx_export import export_onnx

    with pytest.raises(ExportError, match=r"node computes a 47 x 47 grid from point_cloud_range \[-7.2, -7.2, -3.0, "
                                          r"7.2, 7.2, 5.0\] and voxel_size \[0.3, 0.3, 8.0\] .* this model's grid is "
                                          r"48 x 48"):
        export_onnx(tiny_model, config, tmp_path / "deploy")
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_target_is_one_error(tmp_path: Path) -> None:
    from centerpoint_deploy.errors import OutputError

    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="cannot create a staging folder beside"):
        with staged_bundle(tmp_path / "file" / "deploy"):
            pass
