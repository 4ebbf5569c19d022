"""Point-cloud files: raw .bin, ascii/binary .pcd, .npy; corrupt input raises PointCloudError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from centerpoint_deploy.config.schema import PointsConfig
from centerpoint_deploy.data.pointcloud import key_frame_points, read_points, read_points_into, write_points_bin
from centerpoint_deploy.errors import PointCloudError

CLOUD = np.array([[1.0, 2.0, 3.0, 40.0, 0.05], [-1.5, 0.25, -2.0, 7.0, 0.0]], dtype=np.float32)


def test_bin_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "0.pcd.bin"
    write_points_bin(path, CLOUD)
    assert path.stat().st_size == 2 * 5 * 4
    points = read_points(path, load_dim=5)
    assert points.dtype == np.float32 and np.array_equal(points, CLOUD)
    assert read_points(path, load_dim=10).shape == (1, 10)  # 10 floats: a valid but different reading


def test_truncated_bin_names_the_sizes(tmp_path: Path) -> None:
    path = tmp_path / "cut.bin"
    path.write_bytes(CLOUD.tobytes()[:-4])
    with pytest.raises(PointCloudError, match="truncated or wrong load_dim: file has 36 bytes, not a multiple of 4\\*load_dim = 20"):
        read_points(path, load_dim=5)


def test_empty_missing_and_nan(tmp_path: Path) -> None:
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(PointCloudError, match="empty"):
        read_points(empty)
    with pytest.raises(PointCloudError, match="not found"):
        read_points(tmp_path / "nope.bin")
    bad = CLOUD.copy()
    bad[0, 1], bad[1, 3] = np.nan, np.inf
    write_points_bin(tmp_path / "nan.bin", np.concatenate([bad, CLOUD]))
    with pytest.raises(PointCloudError, match="2 of 4 points hold NaN or inf"):
        read_points(tmp_path / "nan.bin")


def test_huge_finite_values_whose_sum_overflows_are_read(tmp_path: Path) -> None:
    """The finite check sums in float32: a sum that overflows on finite values is not a NaN point."""
    huge = np.full((4, 5), 3e38, np.float32)
    write_points_bin(tmp_path / "huge.bin", huge)
    assert not np.isfinite(np.add.reduce(huge, axis=None))  # the quick sum is inf here
    np.testing.assert_array_equal(read_points(tmp_path / "huge.bin"), huge)
    huge[2, 0] = -np.inf
    write_points_bin(tmp_path / "inf.bin", huge)
    with pytest.raises(PointCloudError, match="1 of 4 points hold NaN or inf"):
        read_points(tmp_path / "inf.bin")


def test_read_into_a_buffer_as_read_points_reads(tmp_path: Path) -> None:
    points = np.arange(40, dtype=np.float32).reshape(8, 5)
    write_points_bin(tmp_path / "a.bin", points)
    np.save(tmp_path / "a.npy", points)
    for name in ("a.bin", "a.npy"):  # straight from the file; through a copy
        out = np.full((10, 5), -1.0, np.float32)
        assert read_points_into(tmp_path / name, 5, out) == 8
        np.testing.assert_array_equal(out[:8], points)
        assert (out[8:] == -1).all()
        assert read_points_into(tmp_path / name, 5, np.empty((7, 5), np.float32)) is None  # no room
    write_points_bin(tmp_path / "nan.bin", np.full((3, 5), np.nan, np.float32))
    with pytest.raises(PointCloudError, match="nan.bin: 3 of 3 points hold NaN"):
        read_points_into(tmp_path / "nan.bin", 5, np.empty((10, 5), np.float32))


def test_a_file_the_system_cannot_read_is_a_point_cloud_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_points_bin(tmp_path / "a.bin", np.ones((4, 5), np.float32))

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(np, "fromfile", refused)
    monkeypatch.setattr(Path, "open", refused)
    with pytest.raises(PointCloudError, match="a.bin: cannot be read: Permission denied"):
        read_points(tmp_path / "a.bin")
    with pytest.raises(PointCloudError, match="a.bin: cannot be read: Permission denied"):
        read_points_into(tmp_path / "a.bin", 5, np.empty((4, 5), np.float32))


def test_unsupported_extension(tmp_path: Path) -> None:
    (tmp_path / "a.ply").write_bytes(b"ply")
    with pytest.raises(PointCloudError, match="unsupported point cloud file 'a.ply'"):
        read_points(tmp_path / "a.ply")


def pcd_header(fields: str, size: str, type_: str, count: str, n: int, data: str) -> bytes:
    return (f"# .PCD v0.7\nVERSION 0.7\nFIELDS {fields}\nSIZE {size}\nTYPE {type_}\nCOUNT {count}\n"
            f"WIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {data}\n").encode()


def test_ascii_pcd_maps_fields_and_fills_missing(tmp_path: Path) -> None:
    path = tmp_path / "a.pcd"
    path.write_bytes(pcd_header("x y z intensity", "4 4 4 4", "F F F F", "1 1 1 1", 2, "ascii")
                     + b"1 2 3 40\n-1.5 0.25 -2 7\n")
    expected = CLOUD.copy()
    expected[:, 4] = 0.0  # no time field: zero
    assert np.array_equal(read_points(path, 5), expected)


def test_binary_pcd_with_extra_fields_and_other_types(tmp_path: Path) -> None:
    dtype = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("ring", "<u2"), ("intensity", "<u1"),
                      ("timestamp", "<f8")])
    records = np.zeros(2, dtype=dtype)
    for name, column in (("x", 0), ("y", 1), ("z", 2), ("intensity", 3), ("timestamp", 4)):
        records[name] = CLOUD[:, column]
    records["ring"] = [5, 9]
    path = tmp_path / "b.pcd"
    path.write_bytes(pcd_header("x y z ring intensity timestamp", "4 4 4 2 1 8", "F F F U U F", "1 1 1 1 1 1", 2,
                                "binary") + records.tobytes())
    assert np.array_equal(read_points(path, 5), CLOUD)
    assert read_points(path, 4).shape == (2, 4)


def test_truncated_binary_pcd_and_compressed(tmp_path: Path) -> None:
    path = tmp_path / "t.pcd"
    path.write_bytes(pcd_header("x y z", "4 4 4", "F F F", "1 1 1", 3, "binary") + b"\0" * 20)
    with pytest.raises(PointCloudError, match="truncated binary PCD: 20 data bytes, header needs 3 points x 12 bytes = 36"):
        read_points(path, 4)
    path.write_bytes(pcd_header("x y z", "4 4 4", "F F F", "1 1 1", 3, "binary_compressed") + b"\0" * 20)
    with pytest.raises(PointCloudError, match="binary_compressed"):
        read_points(path, 4)


def test_npy_needs_load_dim_columns(tmp_path: Path) -> None:
    np.save(tmp_path / "p.npy", CLOUD.astype(np.float64))
    assert np.array_equal(read_points(tmp_path / "p.npy", 5), CLOUD)
    with pytest.raises(PointCloudError, match=r"shape \[2, 5\], expected \[N, load_dim=4\]"):
        read_points(tmp_path / "p.npy", 4)


def test_key_frame_points_select_use_dim_and_zero_the_time_lag() -> None:
    points = key_frame_points(CLOUD, PointsConfig(load_dim=5, use_dim=(0, 1, 2, 3, 4)))
    assert points[:, :4].tolist() == CLOUD[:, :4].tolist() and points[:, 4].tolist() == [0.0, 0.0]
    kept = key_frame_points(CLOUD, PointsConfig(load_dim=5, use_dim=(0, 1, 2, 4)), keep_time_lag=True)
    assert kept.tolist() == CLOUD[:, [0, 1, 2, 4]].tolist()
    # A 4-column file for a model that reads x, y, z, time lag: the lag column is created.
    four = key_frame_points(CLOUD[:, :4], PointsConfig(load_dim=4, use_dim=(0, 1, 2, 4)))
    assert four.tolist() == [[1.0, 2.0, 3.0, 0.0], [-1.5, 0.25, -2.0, 0.0]]
    with pytest.raises(PointCloudError, match=r"reads columns \[0, 1, 2, 4\]"):
        key_frame_points(CLOUD[:, :4], PointsConfig(load_dim=4, use_dim=(0, 1, 2, 4)), keep_time_lag=True)
    # A KITTI-style 4-float file for the 11-feature model: intensity kept, time lag 0.
    kitti = key_frame_points(CLOUD[:, :4], PointsConfig(load_dim=5, use_dim=(0, 1, 2, 3, 4)))
    assert kitti.tolist() == np.concatenate([CLOUD[:, :4], np.zeros((2, 1))], axis=1).tolist()
    with pytest.raises(PointCloudError, match="--load-dim"):
        key_frame_points(CLOUD[:, :3], PointsConfig(load_dim=5, use_dim=(0, 1, 2, 3, 4)))


def write_pcd(path: Path, header: bytes, body: bytes = b"1 2 3\n") -> Path:
    path.write_bytes(header + body)
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda h: h.replace(b"POINTS 1", b"POINTS -5"), r"POINTS -5 is invalid: POINTS \(or WIDTH and HEIGHT\)"),
    (lambda h: h.replace(b"SIZE 4 4 4", b"SIZE 4 4 x"), r"SIZE 4 4 x is invalid: one positive integer per field"),
    (lambda h: h.replace(b"COUNT 1 1 1", b"COUNT 1 0 1"), r"COUNT 1 0 1 is invalid"),
])
def test_malformed_pcd_header_numbers(tmp_path: Path, edit, message) -> None:
    path = write_pcd(tmp_path / "h.pcd", edit(pcd_header("x y z", "4 4 4", "F F F", "1 1 1", 1, "ascii")))
    with pytest.raises(PointCloudError, match=message):
        read_points(path, 4)


def test_ascii_pcd_integer_out_of_its_type_is_refused_not_wrapped(tmp_path: Path) -> None:
    header = pcd_header("x y z intensity", "4 4 4 1", "F F F I", "1 1 1 1", 1, "ascii")
    path = write_pcd(tmp_path / "i.pcd", header, b"1 2 3 300\n")
    with pytest.raises(PointCloudError, match=r"field 'intensity' holds 300.0, which its type int8 cannot hold; "
                                              r"allowed: integers in \[-128, 127\]"):
        read_points(path, 4)
    write_pcd(path, header, b"1 2 3 1.5\n")
    with pytest.raises(PointCloudError, match="field 'intensity' holds 1.5"):
        read_points(path, 4)
    write_pcd(path, header, b"1 2 3 -128\n")
    assert read_points(path, 4)[0, 3] == -128.0


@pytest.mark.parametrize("dtype", [np.complex64, np.bool_])
def test_npy_of_non_real_dtype_is_refused(tmp_path: Path, dtype) -> None:
    np.save(tmp_path / "c.npy", CLOUD.astype(dtype))
    with pytest.raises(PointCloudError, match=f"dtype {np.dtype(dtype)} is not supported; allowed: real"):
        read_points(tmp_path / "c.npy", 5)
    np.save(tmp_path / "c.npy", CLOUD.astype(np.int16))
    assert read_points(tmp_path / "c.npy", 5).dtype == np.float32
