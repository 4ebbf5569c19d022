"""Point-cloud files: read ``.bin`` / ``.pcd.bin`` / ``.pcd`` / ``.npy``, write ``.bin``.

Every reader returns ``np.ndarray[N, load_dim]`` float32 in the file's (LiDAR) frame with
the columns x, y, z (metres), intensity, time lag (seconds), then zeros for any further
columns. Corrupt input is never repaired silently: truncated files, empty clouds and
non-finite values raise :class:`PointCloudError`.
"""

from __future__ import annotations

import contextlib
import math
import sys
from pathlib import Path
from typing import Iterator

import numpy as np

from centerpoint_deploy.config.schema import TIME_LAG_COLUMN, PointsConfig
from centerpoint_deploy.errors import PointCloudError

#: PCD field names accepted for each output column, in column order.
PCD_COLUMN_FIELDS: tuple[tuple[str, ...], ...] = (
    ("x",),
    ("y",),
    ("z",),
    ("intensity", "i", "reflectivity"),
    ("time_lag", "time", "timestamp", "t"),
)

#: numpy dtypes of the PCD ``TYPE`` / ``SIZE`` pairs.
_PCD_DTYPES: dict[tuple[str, int], str] = {
    ("F", 4): "f4", ("F", 8): "f8",
    ("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4", ("I", 8): "i8",
    ("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4", ("U", 8): "u8",
}

_PCD_HEADER_KEYS = ("VERSION", "FIELDS", "SIZE", "TYPE", "COUNT", "WIDTH", "HEIGHT", "VIEWPOINT", "POINTS", "DATA")


def read_points(path: str | Path, load_dim: int = 5) -> np.ndarray:
    """Read a point cloud.

    Args:
        path: ``.bin`` / ``.pcd.bin`` (raw little-endian float32, ``load_dim`` per point),
            ``.pcd`` (ascii or binary PCD v0.7) or ``.npy`` (2-D array, ``load_dim`` columns).
        load_dim: floats per point to return (and, for raw files, stored per point).

    Returns:
        ``np.ndarray[N, load_dim]`` float32: x, y, z (m), intensity, time lag (s), then zeros.

    Raises:
        PointCloudError: missing/unsupported/truncated file, no points, non-finite values.
    """
    path = Path(path)
    if load_dim < 3:
        raise PointCloudError(f"load_dim must be >= 3 (x, y, z), got {load_dim}")
    if not path.is_file():
        raise PointCloudError(f"point cloud file not found: {path}")
    name = path.name.lower()
    with _readable(path):
        if name.endswith(".bin"):
            points = _read_raw_float32(path, load_dim)
        elif name.endswith(".pcd"):
            points = _read_pcd(path, load_dim)
        elif name.endswith(".npy"):
            points = _read_npy(path, load_dim)
        else:
            raise PointCloudError(f"unsupported point cloud file '{path.name}': expected .bin, .pcd.bin, .pcd "
                                  "or .npy")
    _check_points(points, str(path))
    return points


@contextlib.contextmanager
def _readable(path: Path) -> Iterator[None]:
    """An operating-system error while reading ``path`` (no permission, an I/O error) as a PointCloudError."""
    try:
        yield
    except OSError as exc:
        raise PointCloudError(f"{path}: cannot be read: {exc.strerror or exc}") from exc


def read_points_into(path: str | Path, load_dim: int, out: np.ndarray) -> int | None:
    """:func:`read_points` into the first rows of ``out`` (``ndarray[R, load_dim]`` float32,
    C-contiguous): a raw float32 file straight from the file, other formats through a copy.

    Returns:
        The rows written, or ``None`` (nothing checked further) when the cloud has more than ``R``.

    Raises:
        PointCloudError: as :func:`read_points`.
    """
    path = Path(path)
    if not path.name.lower().endswith(".bin") or load_dim < 3 or not path.is_file() or sys.byteorder != "little":
        points = read_points(path, load_dim)
        if len(points) > len(out):
            return None
        out[: len(points)] = points
        return len(points)
    with _readable(path):
        rows = _raw_float32_rows(path, load_dim)
        if rows > len(out):
            return None
        with path.open("rb") as file:
            read = file.readinto(memoryview(out[:rows]).cast("B"))
    if read != rows * load_dim * 4:
        raise PointCloudError(f"{path}: truncated while reading: {read} of {rows * load_dim * 4} bytes")
    _check_points(out[:rows], str(path))
    return rows


def write_points_bin(path: str | Path, points: np.ndarray) -> None:
    """Write ``points`` (``np.ndarray[N, D]`` or a CPU tensor) as raw float32, ``D`` per point."""
    array = np.asarray(points, dtype=np.float32)
    if array.ndim != 2:
        raise PointCloudError(f"points to write must be 2-D [N, D], got shape {list(array.shape)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.ascontiguousarray(array).tofile(path)


def key_frame_points(raw: np.ndarray, points_cfg: PointsConfig, *, keep_time_lag: bool = False) -> np.ndarray:
    """The columns the model reads (``points_cfg.use_dim``) from one file read on its own.

    Without sweeps the frame is its own key frame, so the time-lag column (index
    :data:`TIME_LAG_COLUMN`) is 0, as mmdet3d's ``LoadPointsFromMultiSweeps`` sets it for the
    key frame. ``keep_time_lag=True`` keeps the file's column instead, for clouds whose sweeps
    were already merged with their time lags.

    Args:
        raw: ``np.ndarray[N, C]`` from :func:`read_points`; ``C`` may differ from
            ``points_cfg.load_dim`` (a KITTI ``.bin`` has 4 floats) as long as it holds every
            column the model reads besides the time lag.
        points_cfg: the model's point layout.

    Returns:
        ``np.ndarray[N, len(use_dim)]`` float32.
    """
    needed = [d for d in points_cfg.use_dim if d != TIME_LAG_COLUMN or keep_time_lag]
    if raw.ndim != 2 or raw.shape[1] <= max(needed):
        raise PointCloudError(f"points have shape {list(raw.shape)}, but the model reads columns "
                              f"{list(points_cfg.use_dim)} (column {TIME_LAG_COLUMN} is the time lag, set to 0 "
                              "for a single frame); give the file's floats per point with --load-dim")
    width = max(raw.shape[1], TIME_LAG_COLUMN + 1)
    padded = np.zeros((raw.shape[0], width), dtype=np.float32)
    padded[:, : raw.shape[1]] = raw
    if not keep_time_lag:
        padded[:, TIME_LAG_COLUMN] = 0.0
    return np.ascontiguousarray(padded[:, list(points_cfg.use_dim)])


def _check_points(points: np.ndarray, source: str) -> None:
    if points.shape[0] == 0:
        raise PointCloudError(f"{source}: the point cloud is empty")
    # a NaN or inf anywhere makes the sum non-finite: one pass, no temporaries; summed in float32
    # (no cast of each element to float64: a reader's 10-sweep sources 3.63 -> 3.15 ms a frame,
    # docs/benchmarks.md round 17), where finite values can overflow too, which only sends the
    # frame to the exact count below
    if np.isfinite(np.add.reduce(points, axis=None)):
        return
    finite = np.isfinite(points).all(axis=1)
    bad = int(points.shape[0] - finite.sum())
    if bad:
        raise PointCloudError(f"{source}: {bad} of {points.shape[0]} points hold NaN or inf values")


def _raw_float32_rows(path: Path, load_dim: int) -> int:
    """Points in a raw float32 file, from its size."""
    size = path.stat().st_size
    if size % (4 * load_dim):
        raise PointCloudError(f"{path}: truncated or wrong load_dim: file has {size} bytes, "
                              f"not a multiple of 4*load_dim = {4 * load_dim}")
    return size // (4 * load_dim)


def _read_raw_float32(path: Path, load_dim: int) -> np.ndarray:
    _raw_float32_rows(path, load_dim)
    return np.fromfile(path, dtype="<f4").reshape(-1, load_dim).astype(np.float32, copy=False)


def _read_npy(path: Path, load_dim: int) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise PointCloudError(f"{path}: not a readable .npy array ({exc})") from exc
    if array.ndim != 2 or array.shape[1] != load_dim:
        raise PointCloudError(f"{path}: array has shape {list(array.shape)}, expected [N, load_dim={load_dim}]")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise PointCloudError(f"{path}: array dtype {array.dtype} is not supported; allowed: real integer or "
                              "floating-point dtypes (no complex, bool, string or object arrays)")
    return array.astype(np.float32)


def _read_pcd(path: Path, load_dim: int) -> np.ndarray:
    raw = path.read_bytes()
    header, body = _split_pcd_header(raw, path)
    fields = header["FIELDS"]
    sizes = _pcd_header_ints(header, "SIZE", ["4"] * len(fields), path)
    types = header.get("TYPE", ["F"] * len(fields))
    counts = _pcd_header_ints(header, "COUNT", ["1"] * len(fields), path)
    if not len(fields) == len(sizes) == len(types) == len(counts):
        raise PointCloudError(f"{path}: PCD header FIELDS/SIZE/TYPE/COUNT lengths differ: "
                              f"{len(fields)}/{len(sizes)}/{len(types)}/{len(counts)}")
    num_points = _pcd_num_points(header, path)
    dtype = _pcd_record_dtype(fields, sizes, types, counts, path)
    data_kind = header["DATA"][0].lower()
    if data_kind == "ascii":
        records = _parse_ascii_records(body, dtype, num_points, path)
    elif data_kind == "binary":
        needed = num_points * dtype.itemsize
        if len(body) < needed:
            raise PointCloudError(f"{path}: truncated binary PCD: {len(body)} data bytes, "
                                  f"header needs {num_points} points x {dtype.itemsize} bytes = {needed}")
        records = np.frombuffer(body, dtype=dtype, count=num_points)
    elif data_kind == "binary_compressed":
        raise PointCloudError(f"{path}: PCD 'DATA binary_compressed' (LZF) is not supported; "
                              "convert it to binary or ascii (e.g. pcl_convert_pcd_ascii_binary <in> <out> 1)")
    else:
        raise PointCloudError(f"{path}: unknown PCD DATA '{header['DATA'][0]}'; allowed: ascii, binary")
    return _pcd_columns(records, load_dim, path)


def _split_pcd_header(raw: bytes, path: Path) -> tuple[dict[str, list[str]], bytes]:
    header: dict[str, list[str]] = {}
    offset = 0
    while offset < len(raw):
        end = raw.find(b"\n", offset)
        end = len(raw) if end < 0 else end
        line = raw[offset:end].decode("ascii", errors="replace").strip()
        offset = end + 1
        if not line or line.startswith("#"):
            continue
        key, *values = line.split()
        if key.upper() not in _PCD_HEADER_KEYS:
            raise PointCloudError(f"{path}: unexpected PCD header line '{line[:60]}'")
        header[key.upper()] = values
        if key.upper() == "DATA":
            break
    missing = [k for k in ("FIELDS", "DATA") if k not in header or not header[k]]
    if missing:
        raise PointCloudError(f"{path}: PCD header lacks {', '.join(missing)}")
    return header, raw[offset:]


def _pcd_header_ints(header: dict[str, list[str]], key: str, default: list[str], path: Path) -> list[int]:
    """The positive integers of a header line (``SIZE``, ``COUNT``)."""
    values = header.get(key, default)
    if not all(v.isdigit() and int(v) >= 1 for v in values):
        raise PointCloudError(f"{path}: PCD header {key} {' '.join(values)[:60]} is invalid: "
                              "one positive integer per field")
    return [int(v) for v in values]


def _pcd_num_points(header: dict[str, list[str]], path: Path) -> int:
    keys = ("POINTS",) if "POINTS" in header else ("WIDTH", "HEIGHT")
    values = [header.get(k, ["1"] if k == "HEIGHT" else [])[:1] for k in keys]
    if not all(v and v[0].isdigit() for v in values):
        shown = ", ".join(f"{k} {' '.join(header.get(k, ['(missing)']))[:30]}" for k in keys)
        raise PointCloudError(f"{path}: PCD header {shown} is invalid: POINTS (or WIDTH and HEIGHT) "
                              "must be non-negative integers")
    return math.prod(int(v[0]) for v in values)


def _pcd_record_dtype(fields: list[str], sizes: list[int], types: list[str], counts: list[int], path: Path) -> np.dtype:
    parts = []
    for name, size, kind, count in zip(fields, sizes, types, counts):
        code = _PCD_DTYPES.get((kind.upper(), size))
        if code is None:
            raise PointCloudError(f"{path}: PCD field '{name}' has TYPE {kind} SIZE {size}; "
                                  f"allowed: {sorted(_PCD_DTYPES)}")
        parts.append((name, "<" + code, (count,)) if count > 1 else (name, "<" + code))
    # Unnamed padding fields ("_") may repeat; give them unique names.
    seen: dict[str, int] = {}
    unique = []
    for part in parts:
        n = seen.get(part[0], 0)
        seen[part[0]] = n + 1
        unique.append((part[0] if n == 0 else f"{part[0]}#{n}",) + part[1:])
    return np.dtype(unique)


def _parse_ascii_records(body: bytes, dtype: np.dtype, num_points: int, path: Path) -> np.ndarray:
    values_per_point = sum(int(np.prod(dtype[name].shape or (1,))) for name in dtype.names)
    try:
        flat = np.array(body.split(), dtype=np.float64)
    except ValueError as exc:
        raise PointCloudError(f"{path}: ascii PCD body holds a non-numeric value ({exc})") from exc
    if flat.size < num_points * values_per_point:
        raise PointCloudError(f"{path}: truncated ascii PCD: {flat.size} values, header needs "
                              f"{num_points} points x {values_per_point} values")
    table = flat[: num_points * values_per_point].reshape(num_points, values_per_point)
    records = np.zeros(num_points, dtype=dtype)
    column = 0
    for name in dtype.names:
        width = int(np.prod(dtype[name].shape or (1,)))
        values = table[:, column] if width == 1 else table[:, column: column + width]
        _check_fits(values, dtype[name].base, name, path)
        records[name] = values
        column += width
    return records


def _check_fits(values: np.ndarray, dtype: np.dtype, name: str, path: Path) -> None:
    """Refuse ascii values that the field's integer TYPE/SIZE cannot hold (instead of wrapping)."""
    if not np.issubdtype(dtype, np.integer) or values.size == 0:
        return
    info = np.iinfo(dtype)
    bad = ~np.isfinite(values) | (values != np.round(values)) | (values < info.min) | (values > info.max)
    if bad.any():
        first = float(values.reshape(-1)[np.flatnonzero(bad.reshape(-1))[0]])  # a Python float: shown as 300.0
        raise PointCloudError(f"{path}: PCD field '{name}' holds {first!r}, which its type {dtype} cannot hold; "
                              f"allowed: integers in [{info.min}, {info.max}]")


def _pcd_columns(records: np.ndarray, load_dim: int, path: Path) -> np.ndarray:
    names = {name.lower(): name for name in records.dtype.names}
    out = np.zeros((records.shape[0], load_dim), dtype=np.float32)
    for column, aliases in enumerate(PCD_COLUMN_FIELDS[:load_dim]):
        field = next((names[a] for a in aliases if a in names), None)
        if field is None:
            if column < 3:
                raise PointCloudError(f"{path}: PCD has no '{aliases[0]}' field; fields: {list(records.dtype.names)}")
            continue
        values = records[field]
        out[:, column] = values if values.ndim == 1 else values[:, 0]
    return out
