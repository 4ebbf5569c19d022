"""``deploy_metadata.yaml``: what a deploy directory holds, how it was made, and whether to trust it.

A deploy directory (an Autoware model bundle) is what the ONNX Runtime and TensorRT backends
run and what Autoware's node loads: the two ONNX files, the node's parameter files, optionally
two TensorRT engines, and this metadata file. It records the model config, the rot convention
of the head graph, the sha256 of every file, the source checkpoint and config hashes, and the
checks the bundle passed. It is the one record of a bundle (it replaced ``manifest.json``).

:func:`load_manifest` is the one way to open a deploy directory, and it trusts nothing it can
check: every listed file must exist with its sha256, each ONNX file's own ``metadata_props``
must describe the recorded config, and the node's parameter files must pass the node's rules
(:mod:`~centerpoint_deploy.export.bundle_schema`) and describe the same model.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import MISSING, asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import onnx
import yaml

from centerpoint_deploy import contract
from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.errors import BackendError, BundleError, CenterPointError
from centerpoint_deploy.export.precision.int8 import quantized_layers
from centerpoint_deploy.export.precision.plan import PLAN_FILE, PlanRecord, load_plan
from centerpoint_deploy.export.autoware_params import (autoware_model_params, legacy_document,
                                                       legacy_param_file_name, read_metadata)
from centerpoint_deploy.export.bundle_schema import (BUNDLE_VERSION, ML_PACKAGE_FILE, REMAPPER_FILE, MlPackage,
                                                     parse_ml_package, parse_remapper)
from centerpoint_deploy.graph_io import GraphPart
from centerpoint_deploy.outputs import write_text

MANIFEST_FILE = "deploy_metadata.yaml"
#: The file older versions of this tool wrote instead.
LEGACY_MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 2
#: ``bundle_version`` of a directory in the pre-v4.1 layout (``<model>_ml_package.param.yaml``).
LEGACY_BUNDLE = "legacy"

#: ONNX file of each graph part.
ONNX_FILES: dict[str, str] = {"encoder": contract.ENCODER_FILE, "head": contract.HEAD_FILE}
#: TensorRT engine file of each graph part.
ENGINE_FILES: dict[str, str] = {
    part: name.removesuffix(".onnx") + ".engine" for part, name in ONNX_FILES.items()
}


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def config_sha256(config: dict[str, Any]) -> str:
    """Hex sha256 of a config dict's canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def utc_now() -> str:
    """ISO 8601 UTC time, to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by all (the node may run as another user)."""
    write_text(path, text)
    path.chmod(0o644)


@dataclass(frozen=True)
class EngineRecord:
    """One TensorRT engine built from the ONNX file of a graph part.

    Attributes:
        file: engine file name inside the deploy directory.
        sha256: hex digest of the engine file.
        precision: ``"fp32"``, ``"tf32"`` or ``"fp16"``.
        profile: input name -> ``[min, opt, max]`` shapes of the optimization profile.
        tensorrt_version: version of the TensorRT that built it (engines are not portable).
    """

    file: str
    sha256: str
    precision: str
    profile: dict[str, list[list[int]]]
    tensorrt_version: str


@dataclass(frozen=True)
class CheckRecord:
    """A check this bundle passed or failed (``verification``, ``evaluation``, ``calibration``).

    Attributes:
        passed: the check's verdict.
        date: ISO 8601 UTC time it ran.
        summary: one line saying what ran on what (backends, frames, tolerances or metric).
        figures: its headline numbers by name (``{"mAP": 0.53, "NDS": 0.61}``).
    """

    passed: bool
    date: str
    summary: str
    figures: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """Contents of ``deploy_metadata.yaml`` plus the directory it was read from.

    Attributes:
        deploy_dir: directory holding the metadata and the files it lists.
        bundle_version: ``"v4.1"`` (Autoware's current bundle) or ``"legacy"``.
        model_name: the config's ``name``.
        tool_version: ``centerpoint_deploy.__version__`` that exported.
        created: ISO 8601 UTC time of the export.
        config: ``ModelConfig.to_dict()`` of the exported model.
        config_sha256: :func:`config_sha256` of ``config``.
        class_names: class names in heatmap channel order.
        num_features: F, decorated features per point (encoder input axis 2).
        checkpoint_sha256: digest of the checkpoint file, ``None`` for random weights.
        opset: ONNX opset of both graphs.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"``: the precision written into the ONNX
            files (``precision_plan.json`` beside them says which layers).
        trt_precision: the TensorRT precision the node is told to build (``fp32`` / ``fp16``).
        rot_y_axis_reference: the head graph emits Autoware's dim/rot convention.
        simplified: the graphs went through onnxsim.
        files: file name -> sha256 of the ONNX files and the node's parameter files.
        engines: graph part (``"encoder"``/``"head"``) -> its TensorRT engine, if built.
        checks: check name -> the last result recorded for this bundle.
        precision_plan: fp16/int8: the plan of ``precision_plan.json`` (calibration method and
            frames, what stayed float, INT8 layer counts, the budget), recorded by the exporter;
            ``None`` for fp32 and for bundles written before it was recorded (their plan stays in
            the hashed ``precision_plan.json``).
        format_version: metadata layout version.
    """

    deploy_dir: Path
    bundle_version: str
    model_name: str
    tool_version: str
    created: str
    config: dict[str, Any]
    config_sha256: str
    class_names: tuple[str, ...]
    num_features: int
    checkpoint_sha256: str | None
    opset: int
    precision: str
    trt_precision: str
    rot_y_axis_reference: bool
    simplified: bool
    files: dict[str, str]
    engines: dict[str, EngineRecord] = field(default_factory=dict)
    checks: dict[str, CheckRecord] = field(default_factory=dict)
    precision_plan: PlanRecord | None = None
    format_version: int = FORMAT_VERSION

    def model_config(self) -> ModelConfig:
        """The exported model's validated config."""
        return ModelConfig.from_dict(self.config)

    @property
    def param_files(self) -> tuple[str, ...]:
        """The node's parameter files of this bundle's layout."""
        if self.bundle_version == LEGACY_BUNDLE:
            return (legacy_param_file_name(self.model_config()),)
        return ML_PACKAGE_FILE, REMAPPER_FILE

    def onnx_path(self, part: GraphPart) -> Path:
        """Path of the ONNX file of ``part``, after checking it exists and is unchanged."""
        return self._checked(ONNX_FILES[part], self.files.get(ONNX_FILES[part]))

    def engine_path(self, part: GraphPart) -> Path:
        """Path of the TensorRT engine of ``part``, after checking it exists and is unchanged."""
        record = self.engines.get(part)
        if record is None:
            raise BackendError(f"{self.deploy_dir} has no TensorRT engine for the {part}; "
                               f"build one with: centerpoint-deploy build-engine {self.deploy_dir}")
        return self._checked(record.file, record.sha256)

    def _checked(self, name: str, sha256: str | None) -> Path:
        path = self.deploy_dir / name
        if sha256 is None:
            raise BundleError(f"{self.deploy_dir / MANIFEST_FILE}: 'files' does not list {name}")
        if not path.is_file():
            raise BundleError(f"{path} is listed in {MANIFEST_FILE} but missing; re-export into {self.deploy_dir}")
        actual = sha256_file(path)
        if actual != sha256:
            raise BundleError(f"{path} changed after export (sha256 {actual[:12]}..., {MANIFEST_FILE} 'files.{name}' "
                              f"says {sha256[:12]}...); re-export or rebuild instead of editing or replacing files")
        return path

    def with_engine(self, part: GraphPart, record: EngineRecord) -> "Manifest":
        """A copy that also lists ``record`` as the engine of ``part``."""
        return replace(self, engines={**self.engines, part: record})

    def with_check(self, name: str, record: CheckRecord) -> "Manifest":
        """A copy that records ``record`` as the latest ``name`` check."""
        return replace(self, checks={**self.checks, name: record})

    def with_files(self, names: list[str]) -> "Manifest":
        """A copy whose ``files`` digests of ``names`` are re-read from the directory."""
        return replace(self, files={**self.files, **{n: sha256_file(self.deploy_dir / n) for n in names}})

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["deploy_dir"]
        data["class_names"] = list(self.class_names)
        data["precision_plan"] = self.precision_plan.to_dict() if self.precision_plan is not None else None
        return data


def write_manifest(manifest: Manifest) -> Path:
    """Write ``deploy_metadata.yaml`` into ``manifest.deploy_dir`` atomically; return its path."""
    path = manifest.deploy_dir / MANIFEST_FILE
    data = json.loads(json.dumps(manifest.to_dict()))  # plain lists / dicts for safe_dump
    header = "# Written by centerpoint_deploy; edit nothing here (every file's sha256 is checked).\n"
    write_text_atomic(path, header + yaml.safe_dump(data, sort_keys=False))
    return path


def load_manifest(deploy_dir: Path | str) -> Manifest:
    """Open a deploy directory: read ``deploy_metadata.yaml`` and check everything it claims.

    Checks, in order: the metadata's fields and types and its config hash; the node's
    parameter files against the node's rules; every listed file's sha256 (engines included);
    each ONNX file's ``metadata_props`` against the recorded config; the parameter files'
    model facts against the recorded config.

    Raises:
        BackendError: no deploy directory, or metadata that is not YAML / ill-typed / of an
            unknown format version / with an invalid config.
        BundleError: a missing, edited or inconsistent file, naming the file and the key.
    """
    deploy_dir = Path(deploy_dir)
    path = deploy_dir / MANIFEST_FILE
    if not path.is_file():
        if (deploy_dir / LEGACY_MANIFEST_FILE).is_file():
            raise BackendError(f"{deploy_dir} was exported by an older centerpoint_deploy ({LEGACY_MANIFEST_FILE}, "
                               f"no {MANIFEST_FILE}); re-export it")
        raise BackendError(f"{path} not found: '{deploy_dir}' is not a deploy directory "
                           "(create one with: centerpoint-deploy export ... --out DIR)")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise BackendError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise BackendError(f"{path} must hold a mapping, got {type(data).__name__}")
    if data.get("format_version") != FORMAT_VERSION:
        raise BackendError(f"{path} has format_version {data.get('format_version')!r}; "
                           f"this tool reads version {FORMAT_VERSION}")
    try:
        manifest = _from_dict(deploy_dir, data)
        config = manifest.model_config()
    except CenterPointError as exc:
        raise BackendError(f"{path}: {exc}") from exc
    if config_sha256(manifest.config) != manifest.config_sha256:
        raise BundleError(f"{path}: 'config' was edited after export (its sha256 is not 'config_sha256')")
    if (manifest.model_name, manifest.class_names, manifest.num_features) != \
            (config.name, config.class_names, config.num_features):
        raise BundleError(f"{path}: 'model_name' / 'class_names' / 'num_features' do not match its 'config'")
    packages = _check_param_files(manifest, config)
    for name, sha256 in manifest.files.items():
        manifest._checked(name, sha256)
    for record in manifest.engines.values():
        manifest._checked(record.file, record.sha256)
    _check_onnx_metadata(manifest, config)
    _check_precision_plan(manifest)
    if packages is not None:
        _check_ml_package(manifest, config, packages)
    return manifest


def read_param_yaml(path: Path) -> Any:
    """Parse one of the node's YAML parameter files (missing or unreadable -> :class:`BundleError`)."""
    if not path.is_file():
        raise BundleError(f"{path} is missing")
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise BundleError(f"{path} is not valid YAML: {exc}") from exc


#: Required top-level fields and the YAML types they must have.
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "bundle_version": str, "model_name": str, "tool_version": str, "created": str, "config": dict,
    "config_sha256": str, "class_names": list, "num_features": int, "checkpoint_sha256": (str, type(None)),
    "opset": int, "precision": str, "trt_precision": str, "rot_y_axis_reference": bool, "simplified": bool, "files": dict,
    "engines": dict, "checks": dict,
}


def _from_dict(deploy_dir: Path, data: dict[str, Any]) -> Manifest:
    for name, kind in _FIELD_TYPES.items():
        if name not in data:
            raise BackendError(f"field '{name}' is missing")
        if not isinstance(data[name], kind) or (kind is int and isinstance(data[name], bool)):
            raise BackendError(f"field '{name}' = {data[name]!r} has the wrong type")
    unknown = sorted(set(data) - set(_FIELD_TYPES) - {"format_version", "precision_plan"})
    if unknown:
        raise BackendError(f"unknown field(s) {unknown}")
    if data["bundle_version"] not in (BUNDLE_VERSION, LEGACY_BUNDLE):
        raise BackendError(f"field 'bundle_version' = {data['bundle_version']!r} is not "
                           f"'{BUNDLE_VERSION}' or '{LEGACY_BUNDLE}'")
    if set(data["engines"]) - set(ONNX_FILES):
        raise BackendError(f"field 'engines' may name only {sorted(ONNX_FILES)}, got {sorted(data['engines'])}")
    engines = {part: _record(EngineRecord, f"engines.{part}", record) for part, record in data["engines"].items()}
    checks = {name: _record(CheckRecord, f"checks.{name}", record) for name, record in data["checks"].items()}
    fields = {k: v for k, v in data.items() if k not in ("engines", "checks")}
    fields["class_names"] = tuple(fields["class_names"])
    if fields.get("precision_plan") is not None:  # optional: bundles written before it have none
        fields["precision_plan"] = PlanRecord.from_dict(fields["precision_plan"])
    return Manifest(deploy_dir=deploy_dir, engines=engines, checks=checks, **fields)


def _record(kind: type, key: str, record: Any) -> Any:
    fields = kind.__dataclass_fields__.values()
    names = {f.name for f in fields}
    required = {f.name for f in fields if f.default is MISSING and f.default_factory is MISSING}
    if not isinstance(record, dict) or not required <= set(record) <= names:
        raise BackendError(f"field '{key}' must be a mapping with fields {sorted(names)}, got {record!r}")
    return kind(**record)


def _check_param_files(manifest: Manifest, config: ModelConfig) -> MlPackage | None:
    """Validate the node's parameter files; the parsed ml_package of a v4.1 bundle."""
    for name in manifest.param_files:
        if name not in manifest.files:
            raise BundleError(f"{manifest.deploy_dir / MANIFEST_FILE}: 'files' does not list {name}")
    if manifest.bundle_version == LEGACY_BUNDLE:
        path = manifest.deploy_dir / manifest.param_files[0]
        if read_param_yaml(path) != legacy_document(config):
            raise BundleError(f"{path}: 'model_params' does not describe the exported model")
        return None
    package = parse_ml_package(read_param_yaml(manifest.deploy_dir / ML_PACKAGE_FILE),
                               str(manifest.deploy_dir / ML_PACKAGE_FILE))
    parse_remapper(read_param_yaml(manifest.deploy_dir / REMAPPER_FILE), config.class_names,
                   str(manifest.deploy_dir / REMAPPER_FILE))
    return package


def _check_ml_package(manifest: Manifest, config: ModelConfig, package: MlPackage) -> None:
    path = manifest.deploy_dir / ML_PACKAGE_FILE
    expected_paths = {"encoder_onnx_path": ONNX_FILES["encoder"], "head_onnx_path": ONNX_FILES["head"],
                      "class_remapper_param_path": REMAPPER_FILE}
    for key, name in expected_paths.items():
        if package.paths[key] != name:
            raise BundleError(f"{path}: '{key}' = '{package.paths[key]}', the bundle's file is '{name}'")
    if package.trt_precision != manifest.trt_precision:
        raise BundleError(f"{path}: 'trt_precision' = '{package.trt_precision}', {MANIFEST_FILE} says "
                          f"'{manifest.trt_precision}'")
    _compare(path, "model_params", package.model_facts, autoware_model_params(config))


def _check_precision_plan(manifest: Manifest) -> None:
    """The recorded plan must be ``precision_plan.json``'s and describe the ONNX files' Q/DQ layers."""
    record = manifest.precision_plan
    if record is None:
        return
    path = manifest.deploy_dir / MANIFEST_FILE
    if record.precision != manifest.precision:
        raise BundleError(f"{path}: 'precision_plan.precision' = {record.precision!r}, 'precision' says "
                          f"{manifest.precision!r}")
    if PLAN_FILE not in manifest.files:
        raise BundleError(f"{path}: 'precision_plan' is recorded but 'files' does not list {PLAN_FILE}")
    try:
        written = load_plan(manifest.deploy_dir)
        if written is None or PlanRecord.of(written) != record:
            raise BundleError(f"{path}: 'precision_plan' was edited after export (it is not the plan of {PLAN_FILE}); "
                              "re-export instead of editing")
        for part, name in ONNX_FILES.items():
            graph = onnx.load(str(manifest.deploy_dir / name), load_external_data=False)
            found = len(quantized_layers(graph))
            if found != record.int8_layers.get(part, 0):
                raise BundleError(f"{manifest.deploy_dir / name}: {found} INT8 layers, {MANIFEST_FILE} "
                                  f"'precision_plan.int8_layers.{part}' says {record.int8_layers.get(part, 0)}")
    except BundleError:
        raise
    except CenterPointError as exc:
        raise BundleError(f"{path}: 'precision_plan' cannot be checked: {exc}") from exc


def _check_onnx_metadata(manifest: Manifest, config: ModelConfig) -> None:
    """Each ONNX file's own ``metadata_props`` must describe the recorded config."""
    expected = {**autoware_model_params(config), "rot_y_axis_reference": manifest.rot_y_axis_reference}
    for part, name in ONNX_FILES.items():
        path = manifest.deploy_dir / name
        try:
            facts = read_metadata(onnx.load(str(path), load_external_data=False))
        except Exception as exc:  # onnx raises DecodeError / OSError / ValueError from protobuf
            raise BundleError(f"{path} is not a readable ONNX file: {exc}") from exc
        _compare(path, "metadata_props", facts, expected, f"{MANIFEST_FILE} 'config'")


def _compare(path: Path, section: str, found: dict[str, Any], expected: dict[str, Any],
             source: str = "the exported model") -> None:
    for key, value in expected.items():
        if found.get(key) != value:
            raise BundleError(f"{path}: '{section}.{key}' = {found.get(key)!r}, {source} has {value!r}")


#: Config sections the exported graphs or their pre-processing depend on. ``decode`` and
#: ``nms`` thresholds only steer post-processing and may differ (``out_size_factor`` may not).
_GRAPH_SECTIONS = ("class_names", "points", "voxelization", "voxel_encoder", "backbone", "neck", "head")


def config_mismatches(manifest: Manifest, config: ModelConfig) -> list[str]:
    """``'field: exported X, given Y'`` for every graph-relevant field where ``config`` differs.

    Compares :data:`_GRAPH_SECTIONS` and ``decode.out_size_factor``; empty when they agree.
    """
    exported = _flatten(manifest.config)
    given = _flatten(config.to_dict())
    keys = [k for k in sorted(set(exported) | set(given))
            if k.split(".")[0] in _GRAPH_SECTIONS or k == "decode.out_size_factor"]
    return [f"{k}: exported {exported.get(k)!r}, given {given.get(k)!r}" for k in keys if exported.get(k) != given.get(k)]


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
