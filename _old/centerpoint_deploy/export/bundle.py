"""Write, read and update Autoware model bundles (deploy directories).

A v4.1 bundle (Autoware's ``autoware_lidar_centerpoint`` from bundle v4.1) is one folder the
node loads as is::

    pts_voxel_encoder.onnx                 encoder graph (contract §2)
    pts_backbone_neck_head.onnx            backbone + neck + head graph
    ml_package.param.yaml                  the node's model and threshold parameters
    detection_class_remapper.param.yaml    relabelling by footprint area (identity by default)
    deploy_metadata.yaml                   sha256 of every file, provenance, checks passed

The ``legacy`` layout replaces the two parameter files by ``<model>_ml_package.param.yaml``
(``model_params_version: "1.0.0"``) for nodes older than bundle v4.1.

A bundle is assembled in a staging folder beside its target, opened there with the same
checks every reader applies (:func:`~centerpoint_deploy.export.manifest.load_manifest`), and
only then moved into place, the metadata last: a bundle that fails them is never written.

The node's post-processing parameters have one writer and one reader here, shared by the
autoware post-processing, threshold calibration and export: :func:`read_node_params`
(:func:`bundle_node_params` of an opened bundle),
:func:`write_node_params` / :func:`write_thresholds`.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import yaml

from centerpoint_deploy import __version__
from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.errors import BundleError, ConfigError, ExportError, OutputError
from centerpoint_deploy.export.autoware_params import autoware_model_params, legacy_document, legacy_param_file_name
from centerpoint_deploy.export.bundle_schema import (BUNDLE_VERSION, ML_PACKAGE_FILE, REMAPPER_FILE, TRT_PRECISIONS,
                                                     ml_package_document, parse_ml_package, parse_remapper,
                                                     remapper_document)
from centerpoint_deploy.export.manifest import (ENGINE_FILES, LEGACY_BUNDLE, LEGACY_MANIFEST_FILE, MANIFEST_FILE,
                                                ONNX_FILES, CheckRecord, Manifest, config_sha256, load_manifest,
                                                read_param_yaml, sha256_file, utc_now, write_manifest,
                                                write_text_atomic)
from centerpoint_deploy.export.precision.plan import PLAN_FILE, PlanRecord, load_plan
from centerpoint_deploy.postprocess.node_params import NodePostprocessParams, ScoreThresholds

#: Values of ``--autoware-format``.
AUTOWARE_FORMATS = (BUNDLE_VERSION, LEGACY_BUNDLE)


def check_bundle_options(autoware_format: str, precision: str) -> None:
    """Refuse a bundle layout or node precision before any work is done.

    Raises:
        ExportError: an unknown layout, or a v4.1 ``trt_precision`` the node's schema refuses.
    """
    if autoware_format not in AUTOWARE_FORMATS:
        raise ExportError(f"--autoware-format '{autoware_format}' is not one of {list(AUTOWARE_FORMATS)}")
    if autoware_format == BUNDLE_VERSION and precision not in TRT_PRECISIONS:
        raise ExportError(f"precision '{precision}' cannot be a v4.1 bundle's trt_precision; the node takes "
                          f"{' or '.join(TRT_PRECISIONS)}")


def node_precision(precision: str) -> str:
    """The node's ``trt_precision`` for a TensorRT build precision of this tool.

    ``tf32`` is TensorRT's fp32 mode with TF32 tactics allowed, which is what the node's
    ``fp32`` builds (TensorRT enables TF32 unless told not to); ``fp32`` and ``fp16`` map to
    themselves. An ``int8`` ONNX (explicit Q/DQ: its quantized layers run INT8 whatever the
    flag) gets ``fp32`` for the layers it keeps float, the precision its SNR was checked in.

    Raises:
        ExportError: a precision the node's schema has no value for.
    """
    mapped = {"fp32": "fp32", "tf32": "fp32", "fp16": "fp16", "int8": "fp32"}.get(precision)
    if mapped is None:
        raise ExportError(f"precision '{precision}' has no trt_precision in the node's schema "
                          f"({' or '.join(TRT_PRECISIONS)})")
    return mapped


@contextmanager
def staged_bundle(out_dir: Path | str) -> Iterator[Path]:
    """A fresh staging folder beside ``out_dir`` (same file system), removed when the block ends."""
    out_dir = Path(out_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.staging-"))
    except OSError as exc:
        raise OutputError(f"cannot create a staging folder beside {out_dir}: {exc.strerror or exc}") from exc
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def publish_bundle(stage: Path, out_dir: Path | str, config: ModelConfig, *, autoware_format: str,
                   precision: str, trt_precision: str, opset: int, rot_y_axis_reference: bool, simplified: bool,
                   checkpoint_sha256: str | None, params: NodePostprocessParams | None = None,
                   extra_files: list[str] | None = None) -> Manifest:
    """Complete the bundle whose ONNX files are in ``stage``, check it, and move it to ``out_dir``.

    Args:
        stage: a :func:`staged_bundle` folder holding both ONNX files.
        out_dir: the deploy directory, created if needed; our files there are replaced, stale
            engines and the other layout's parameter files removed, other files left alone.
        config: the exported model.
        autoware_format: ``"v4.1"`` or ``"legacy"``.
        precision: the precision written into the ONNX files (``fp32``, ``fp16``, ``int8``).
        trt_precision: the precision the node is told to build (``fp32`` / ``fp16``).
        params: the node's post-processing parameters; ``None``: the node's defaults.
        extra_files: other files in ``stage`` the bundle lists (``precision_plan.json``).

    Returns:
        The bundle's manifest, ``deploy_dir`` = ``out_dir``.

    Raises:
        ExportError: the options, or the assembled bundle fails the checks (nothing is moved).
    """
    check_bundle_options(autoware_format, trt_precision)
    out_dir = Path(out_dir)
    if autoware_format == BUNDLE_VERSION:
        params = params if params is not None else NodePostprocessParams.defaults(config.class_names)
        param_files = _write_node_files(stage, config, params, trt_precision)
    else:
        param_files = [legacy_param_file_name(config)]
        _dump(stage / param_files[0], legacy_document(config))
    config_dict = config.to_dict()
    plan = load_plan(stage) if PLAN_FILE in (extra_files or []) else None
    manifest = Manifest(
        deploy_dir=stage, bundle_version=autoware_format, model_name=config.name, tool_version=__version__,
        created=utc_now(), config=config_dict, config_sha256=config_sha256(config_dict),
        class_names=tuple(config.class_names), num_features=config.num_features,
        checkpoint_sha256=checkpoint_sha256, opset=opset, precision=precision, trt_precision=trt_precision,
        rot_y_axis_reference=rot_y_axis_reference, simplified=simplified,
        files={name: sha256_file(stage / name) for name in [*ONNX_FILES.values(), *param_files, *(extra_files or [])]},
        precision_plan=PlanRecord.of(plan) if plan is not None else None,
    )
    write_manifest(manifest)
    try:
        load_manifest(stage)
    except BundleError as exc:
        raise ExportError(f"the exported bundle fails its own checks, nothing written to {out_dir}: {exc}") from exc

    out_dir.mkdir(parents=True, exist_ok=True)
    stale = [MANIFEST_FILE, LEGACY_MANIFEST_FILE, ML_PACKAGE_FILE, REMAPPER_FILE, legacy_param_file_name(config), PLAN_FILE,
             *ENGINE_FILES.values(), *(name + ".log" for name in ENGINE_FILES.values())]
    for name in stale:  # the metadata goes first: a directory without it is an unfinished export
        (out_dir / name).unlink(missing_ok=True)
    for name in manifest.files:
        (stage / name).replace(out_dir / name)
    (stage / MANIFEST_FILE).replace(out_dir / MANIFEST_FILE)
    return replace(manifest, deploy_dir=out_dir)


def read_node_params(bundle_dir: Path | str) -> NodePostprocessParams:
    """The node's post-processing parameters of a v4.1 bundle, class names as the model's config.

    Thresholds and yaw-norm thresholds come from ``ml_package.param.yaml``, the remapper from
    ``detection_class_remapper.param.yaml``; the NMS settings are not part of a bundle (the
    node's ``centerpoint_common.param.yaml``), so they are the node's defaults.

    Raises:
        BackendError / BundleError: the bundle fails :func:`load_manifest`, or is ``legacy``.
    """
    manifest = load_manifest(bundle_dir)
    return _node_params(manifest, manifest.model_config())


def bundle_node_params(manifest: Manifest, config: ModelConfig | None = None) -> NodePostprocessParams | None:
    """The node's post-processing parameters of an opened bundle (``None`` for a ``legacy`` one,
    which has none), class names as ``config``'s (default: the bundle's model config)."""
    if manifest.bundle_version != BUNDLE_VERSION:
        return None
    return _node_params(manifest, config or manifest.model_config())


def write_node_params(bundle_dir: Path | str, params: NodePostprocessParams) -> Manifest:
    """Write ``params`` into a v4.1 bundle's two parameter files, re-validate and re-hash.

    Each file is replaced atomically, the metadata last; nothing changes when ``params`` do not
    fit the bundle's model or the node's rules.

    Raises:
        BundleError: the bundle fails :func:`load_manifest`, is ``legacy``, or ``params`` name
            other classes than its model, or break the node's rules (a threshold of 1.0).
    """
    manifest = load_manifest(bundle_dir)
    config = manifest.model_config()
    _node_params(manifest, config)  # a v4.1 bundle
    _check_classes(manifest, params.thresholds.class_names)
    with staged_bundle(manifest.deploy_dir / ML_PACKAGE_FILE) as stage:
        names = _write_node_files(stage, config, params, manifest.trt_precision)
        for name in names:
            (stage / name).replace(manifest.deploy_dir / name)
    updated = manifest.with_files(names)
    write_manifest(updated)
    return updated


def write_thresholds(bundle_dir: Path | str, thresholds: ScoreThresholds) -> Manifest:
    """Replace a v4.1 bundle's score thresholds (e.g. calibrated ones); see :func:`write_node_params`."""
    manifest = load_manifest(bundle_dir)
    current = _node_params(manifest, manifest.model_config())
    _check_classes(manifest, thresholds.class_names)
    try:
        params = replace(current, thresholds=thresholds)
    except ConfigError as exc:
        raise BundleError(f"{bundle_dir}: {exc}") from exc
    return write_node_params(bundle_dir, params)


def record_check(bundle_dir: Path | str, name: str, record: CheckRecord) -> Manifest:
    """Record the result of a check (``"verification"``, ``"evaluation"``, ...) in ``deploy_metadata.yaml``.

    The bundle is opened with every check first (a bundle edited since export is refused, not
    blessed); the metadata file is rewritten atomically.
    """
    manifest = load_manifest(bundle_dir).with_check(name, record)
    write_manifest(manifest)
    return manifest


def check_bundle(bundle_dir: Path | str) -> Manifest:
    """Validate a bundle someone else made: the node's files first, then hashes and consistency.

    Raises:
        BundleError / BackendError: the first problem, naming the file and the key.
    """
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.is_dir():
        raise BundleError(f"{bundle_dir} is not a directory")
    if not (bundle_dir / MANIFEST_FILE).is_file() and (bundle_dir / ML_PACKAGE_FILE).is_file():
        package = parse_ml_package(read_param_yaml(bundle_dir / ML_PACKAGE_FILE), str(bundle_dir / ML_PACKAGE_FILE))
        parse_remapper(read_param_yaml(bundle_dir / package.paths["class_remapper_param_path"]),
                       package.model_facts["class_names"], str(bundle_dir / package.paths["class_remapper_param_path"]))
        raise BundleError(f"{bundle_dir / MANIFEST_FILE} is missing: the node's parameter files pass its rules, "
                          "but nothing records the files' sha256 to check them against")
    return load_manifest(bundle_dir)


def _check_classes(manifest: Manifest, class_names: tuple[str, ...]) -> None:
    if [name.lower() for name in class_names] != [name.lower() for name in manifest.class_names]:
        raise BundleError(f"{manifest.deploy_dir}: the parameters name classes {list(class_names)}, "
                          f"the bundle's model {list(manifest.class_names)}")


def _node_params(manifest: Manifest, config: ModelConfig) -> NodePostprocessParams:
    if manifest.bundle_version != BUNDLE_VERSION:
        raise BundleError(f"{manifest.deploy_dir} is a {manifest.bundle_version} bundle without the node's "
                          f"post-processing parameters; re-export it with --autoware-format {BUNDLE_VERSION}")
    package = parse_ml_package(read_param_yaml(manifest.deploy_dir / ML_PACKAGE_FILE))
    remapper = parse_remapper(read_param_yaml(manifest.deploy_dir / REMAPPER_FILE), config.class_names)
    thresholds = ScoreThresholds(tuple(config.class_names), package.thresholds.distance_bin_upper_limits,
                                 package.thresholds.min_confidence_scores)
    return NodePostprocessParams(thresholds, package.yaw_norm_thresholds, remapper=remapper)


def _write_node_files(stage: Path, config: ModelConfig, params: NodePostprocessParams, precision: str) -> list[str]:
    """Write and re-read the v4.1 parameter files into ``stage``; their names.

    Raises:
        BundleError: ``params`` break a rule of the node's (re-read with the same validator).
    """
    try:
        remapper = remapper_document(params.remapper)
    except ConfigError as exc:
        raise BundleError(f"{REMAPPER_FILE}: {exc}") from exc
    package = ml_package_document(autoware_model_params(config), params, precision)
    for name, document in ((ML_PACKAGE_FILE, package), (REMAPPER_FILE, remapper)):
        _dump(stage / name, document)
    parse_ml_package(read_param_yaml(stage / ML_PACKAGE_FILE))
    parse_remapper(read_param_yaml(stage / REMAPPER_FILE), config.class_names)
    return [ML_PACKAGE_FILE, REMAPPER_FILE]


def _dump(path: Path, document: dict) -> None:
    write_text_atomic(path, yaml.safe_dump(document, sort_keys=False, default_flow_style=None))
