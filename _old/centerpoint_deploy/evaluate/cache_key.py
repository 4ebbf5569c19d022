"""What a backend's cached predictions depend on, by content: the prediction cache key.

A key is the SHA-256 of three parts:

- **inputs** (:func:`inputs_digest`): for every evaluated frame in order, its token and time,
  pose (``ego2global``) and calibration (``lidar2ego``), and for its key point file and each
  merged sweep (path, size, modification time and a SHA-256 of the bytes), the sweep's time
  and transform; plus the dataset's ``load_dim`` and sweep options. Each file is hashed once,
  by a pool of threads (hashlib releases the GIL).
- **the detector** (:func:`detector_description`): the model config, every detector setting
  (static shapes, graph, compile, NMS rounds, point budget, device, y-axis reference, the
  post-processor) and each backend's name, class and options (precision, fusions, ...).
- **the weights**: the caller's fingerprint of the checkpoint or deploy folder
  (:func:`fingerprint_files`), and the code: the package's version, a hash of its own source
  files and the torch version.

Metric settings (class ranges, thresholds, buckets) are not part of it: they do not change
predictions, so changing them re-scores cached predictions without running a backend.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from centerpoint_deploy.data.dataset import FrameDataset
from centerpoint_deploy.errors import EvaluationError

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class FileStamp:
    """A file as it was read: size (bytes), modification time (ns) and SHA-256 (hex) of its bytes."""

    size: int
    mtime_ns: int
    sha256: str


def stamp_file(path: str | Path) -> FileStamp:
    """:class:`FileStamp` of ``path``.

    Raises:
        EvaluationError: the file cannot be read.
    """
    try:
        with open(path, "rb") as f:
            status = os.fstat(f.fileno())
            digest = hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as exc:
        raise EvaluationError(f"cannot read '{path}' to key the prediction cache: {exc.strerror}") from exc
    return FileStamp(status.st_size, status.st_mtime_ns, digest)


def fingerprint_files(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes, or of every file under a folder (relative names and bytes,
    sorted by name)."""
    path = Path(path)
    if not path.exists():
        raise EvaluationError(f"cannot fingerprint '{path}': it does not exist")
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(str(file.relative_to(path) if file != path else file.name).encode())
        with file.open("rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()


def _used_sweeps(dataset: FrameDataset, index: int) -> tuple:
    record = dataset.records[int(index)]
    return record.sweeps[: dataset.sweep_options.sweeps_num] if dataset.sweep_options.sweeps_num else ()


def frame_files(dataset: FrameDataset, indices: Sequence[int]) -> list[str]:
    """The point files (key frames and merged sweeps) the frames at ``indices`` read, sorted, once each."""
    files = {dataset.records[int(i)].lidar_path for i in indices}
    files.update(s.lidar_path for i in indices for s in _used_sweeps(dataset, i))
    return sorted(files)


def stamp_files(paths: Sequence[str], threads: int | None = None) -> dict[str, FileStamp]:
    """path -> :class:`FileStamp`, hashed by a pool of threads."""
    with ThreadPoolExecutor(max_workers=threads or min(8, (os.cpu_count() or 1) + 1)) as pool:
        return dict(zip(paths, pool.map(stamp_file, paths)))


def inputs_digest(dataset: FrameDataset, indices: Sequence[int], stamps: dict[str, FileStamp] | None = None) -> str:
    """SHA-256 (hex) of everything the frames at ``indices`` are built from (module doc).

    ``stamps`` holds (at least) the :func:`stamp_files` of :func:`frame_files`; computed when None.
    """
    stamps = stamp_files(frame_files(dataset, indices)) if stamps is None else stamps
    options = dataset.sweep_options
    digest = hashlib.sha256()
    digest.update(json.dumps([dataset.load_dim, options.sweeps_num, options.pad_empty_sweeps,
                              options.remove_close_radius]).encode())
    for i in indices:
        record = dataset.records[int(i)]
        digest.update(json.dumps([record.token, record.timestamp, record.lidar_path,
                                  _stamp(stamps[record.lidar_path])]).encode())
        digest.update(_matrix(record.ego2global) + _matrix(record.lidar2ego))
        for sweep in _used_sweeps(dataset, i):
            digest.update(json.dumps([sweep.lidar_path, sweep.timestamp, _stamp(stamps[sweep.lidar_path])]).encode())
            digest.update(_matrix(sweep.sweep2key))
        digest.update(b"\n")
    return digest.hexdigest()


def detector_description(detector: Any) -> dict[str, Any]:
    """Every setting of a detector (:class:`~centerpoint_deploy.detector.Detector`,
    :class:`~centerpoint_deploy.static_pipeline.StaticPipeline` and its ``settings``) that can change
    its boxes (another callable with a ``config`` is described by its class and whatever of these it has)."""
    settings = {name: _plain(getattr(detector, name, None))
                for name in ("rot_y_axis_reference", "settings", "postprocess")}
    device = getattr(detector, "device", None)
    settings["device"] = None if device is None else torch.device(device).type
    parts = {part: None if backend is None else
             {"name": backend.name, "class": _plain(type(backend)), "options": _plain(getattr(backend, "options", None))}
             for part, backend in (("encoder", getattr(detector, "encoder", None)),
                                   ("head", getattr(detector, "head", None)))}
    return {"class": _plain(type(detector)), "config": repr(detector.config), "detector": settings, **parts}


def prediction_cache_key(name: str, detector: Any, inputs: str, weights: str) -> str:
    """SHA-256 (hex) cache key of backend ``name``'s predictions (module doc).

    Args:
        name: the backend's name in the evaluation.
        detector: its :class:`~centerpoint_deploy.detector.Detector`.
        inputs: :func:`inputs_digest` of the evaluated frames.
        weights: fingerprint of its checkpoint or deploy folder (:func:`fingerprint_files`).
    """
    content = {"name": name, "inputs": inputs, "weights": weights, "detector": detector_description(detector),
               "code": code_fingerprint(), "torch": torch.__version__}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """SHA-256 (hex) of the package's Python sources (a fix in decode or NMS invalidates the cache)."""
    digest = hashlib.sha256()
    for file in sorted(_PACKAGE_DIR.rglob("*.py")):
        digest.update(str(file.relative_to(_PACKAGE_DIR)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def _stamp(stamp: FileStamp) -> list[Any]:
    return [stamp.size, stamp.mtime_ns, stamp.sha256]


def _matrix(matrix: np.ndarray) -> bytes:
    return np.ascontiguousarray(matrix, dtype=np.float64).tobytes()


def _plain(value: Any) -> Any:
    """A JSON-able, deterministic rendering of a setting: plain values as they are, dataclasses by
    their repr, functions by name, other objects by their class (never an address)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) or isinstance(value, (torch.device, torch.dtype, Path)):
        return repr(value)
    named = value if hasattr(value, "__qualname__") else type(value)
    return f"{named.__module__}.{named.__qualname__}"
