"""``manifest.json``: what a deploy directory holds and how it was made.

A deploy directory is what the ONNX Runtime and TensorRT backends run: the two ONNX files,
optionally two TensorRT engines, the Autoware parameter file and this manifest. The manifest
records the model config, the rot convention of the head graph and the sha256 of every file,
so a backend can refuse files that were swapped after export.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from centerpoint_deploy import contract
from centerpoint_deploy.config.schema import ModelConfig
from centerpoint_deploy.errors import BackendError, CenterPointError
from centerpoint_deploy.export.graph_io import GraphPart

MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1

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
class Manifest:
    """Contents of ``manifest.json`` plus the directory it was read from.

    Attributes:
        deploy_dir: directory holding the manifest and the files it lists.
        tool_version: ``centerpoint_deploy.__version__`` that exported.
        created: ISO 8601 UTC time of the export.
        config: ``ModelConfig.to_dict()`` of the exported model.
        class_names: class names in heatmap channel order.
        num_features: F, decorated features per point (encoder input axis 2).
        checkpoint_sha256: digest of the checkpoint file, ``None`` for random weights.
        opset: ONNX opset of both graphs.
        rot_y_axis_reference: the head graph emits Autoware's dim/rot convention.
        simplified: the graphs went through onnxsim.
        files: file name -> sha256 of the ONNX files and the Autoware parameter file.
        engines: graph part (``"encoder"``/``"head"``) -> its TensorRT engine, if built.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"``: the precision written into the ONNX
            files (``precision_plan.json`` beside them says which layers; absent in older
            manifests, which are fp32).
        format_version: manifest layout version.
    """

    deploy_dir: Path
    tool_version: str
    created: str
    config: dict[str, Any]
    class_names: tuple[str, ...]
    num_features: int
    checkpoint_sha256: str | None
    opset: int
    rot_y_axis_reference: bool
    simplified: bool
    files: dict[str, str]
    engines: dict[str, EngineRecord] = field(default_factory=dict)
    precision: str = "fp32"
    format_version: int = FORMAT_VERSION

    def model_config(self) -> ModelConfig:
        """The exported model's validated config."""
        return ModelConfig.from_dict(self.config)

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
            raise BackendError(f"{self.deploy_dir / MANIFEST_FILE} does not list {name}")
        if not path.is_file():
            raise BackendError(f"{path} is listed in the manifest but missing; re-export into {self.deploy_dir}")
        actual = sha256_file(path)
        if actual != sha256:
            raise BackendError(f"{path} changed after export (sha256 {actual[:12]}..., manifest says "
                               f"{sha256[:12]}...); re-export or rebuild instead of replacing files")
        return path

    def with_engine(self, part: GraphPart, record: EngineRecord) -> "Manifest":
        """A copy that also lists ``record`` as the engine of ``part``."""
        return replace(self, engines={**self.engines, part: record})

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["deploy_dir"]
        data["class_names"] = list(self.class_names)
        return data


def write_manifest(manifest: Manifest) -> Path:
    """Write ``manifest.json`` into ``manifest.deploy_dir``; return its path."""
    path = manifest.deploy_dir / MANIFEST_FILE
    path.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")
    return path


def load_manifest(deploy_dir: Path | str) -> Manifest:
    """Read and validate ``<deploy_dir>/manifest.json``.

    Raises:
        BackendError: the directory or manifest is missing, not JSON, has missing or
            ill-typed fields, an unknown format version, or an invalid model config.
    """
    deploy_dir = Path(deploy_dir)
    path = deploy_dir / MANIFEST_FILE
    if not path.is_file():
        raise BackendError(f"{path} not found: '{deploy_dir}' is not a deploy directory "
                           "(create one with: centerpoint-deploy export ... --out DIR)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackendError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BackendError(f"{path} must hold a JSON object, got {type(data).__name__}")
    if data.get("format_version") != FORMAT_VERSION:
        raise BackendError(f"{path} has format_version {data.get('format_version')!r}; "
                           f"this tool reads version {FORMAT_VERSION}")
    try:
        manifest = _from_dict(deploy_dir, data)
        manifest.model_config()
    except CenterPointError as exc:
        raise BackendError(f"{path}: {exc}") from exc
    return manifest


#: Required top-level fields and the JSON types they must have.
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "tool_version": str, "created": str, "config": dict, "class_names": list, "num_features": int,
    "checkpoint_sha256": (str, type(None)), "opset": int, "rot_y_axis_reference": bool,
    "simplified": bool, "files": dict, "engines": dict,
}


def _from_dict(deploy_dir: Path, data: dict[str, Any]) -> Manifest:
    for name, kind in _FIELD_TYPES.items():
        if name not in data:
            raise BackendError(f"manifest field '{name}' is missing")
        if not isinstance(data[name], kind) or (kind is int and isinstance(data[name], bool)):
            raise BackendError(f"manifest field '{name}' = {data[name]!r} has the wrong type")
    if not isinstance(data.get("precision", "fp32"), str):
        raise BackendError(f"manifest field 'precision' = {data['precision']!r} has the wrong type")
    unknown = sorted(set(data) - set(_FIELD_TYPES) - {"format_version", "precision"})
    if unknown:
        raise BackendError(f"unknown manifest field(s) {unknown}")
    engine_fields = {f for f in EngineRecord.__dataclass_fields__}
    engines = {}
    for part, record in data["engines"].items():
        if part not in ONNX_FILES or not isinstance(record, dict) or set(record) != engine_fields:
            raise BackendError(f"manifest engine entry '{part}' must be one of {sorted(ONNX_FILES)} "
                               f"with fields {sorted(engine_fields)}, got {record!r}")
        engines[part] = EngineRecord(**record)
    fields = {k: v for k, v in data.items() if k != "engines"}
    fields["class_names"] = tuple(fields["class_names"])
    return Manifest(deploy_dir=deploy_dir, engines=engines, **fields)


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
