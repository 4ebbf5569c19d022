"""``outputs``: output locations checked up front, atomic writes, names kept inside ``--out``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from centerpoint_deploy.errors import OutputError
from centerpoint_deploy.outputs import (folder_lock, inside, prepare_dir, prepare_file, replacing, safe_name,
                                        write_text)


def test_prepare_dir_creates_and_refuses_a_file(tmp_path: Path) -> None:
    assert prepare_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # checked, not created: a later failure leaves nothing behind
    with folder_lock(tmp_path / "a" / "b", "test"):  # created when writing starts
        assert (tmp_path / "a" / "b").is_dir()
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is an existing file, not a folder"):
        prepare_dir(tmp_path / "f")
    with pytest.raises(OutputError, match="cannot create the folder"):
        prepare_dir(tmp_path / "f" / "sub")
    assert list(tmp_path.glob("a/b/*")) == []  # the write probe leaves nothing


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_prepare_dir_refuses_a_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="is not writable"):
            prepare_dir(folder)
    finally:
        folder.chmod(0o755)


def test_prepare_file_refuses_a_folder(tmp_path: Path) -> None:
    assert prepare_file(tmp_path / "x" / "boxes.json") == tmp_path / "x" / "boxes.json"
    with pytest.raises(OutputError, match="is a folder"):
        prepare_file(tmp_path, "--output")


def test_safe_name_keeps_tokens_inside(tmp_path: Path) -> None:
    name = safe_name("x/../../../../../../tmp/PWNED")
    assert "/" not in name and not name.startswith(".")
    assert inside(tmp_path, tmp_path / f"{name}.png")
    assert safe_name("..") == "_" and safe_name("") == "_"
    long_a, long_b = safe_name("a" * 300), safe_name("a" * 299 + "b")
    assert len(long_a) <= 96 and long_a != long_b
    assert safe_name("scene-01_frame.3") == "scene-01_frame.3"


@pytest.mark.parametrize("path", ["../x.png", "/tmp/x.png", "a/../../x.png"])
def test_inside_refuses_escapes(tmp_path: Path, path: str) -> None:
    with pytest.raises(OutputError, match="outside the output folder"):
        inside(tmp_path / "out", path)


def test_inside_refuses_a_symlink_out(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "link").symlink_to(tmp_path)
    with pytest.raises(OutputError):
        inside(tmp_path / "out", tmp_path / "out" / "link" / "x.png")


def test_replacing_is_atomic_and_unique(tmp_path: Path) -> None:
    target = tmp_path / "plot.png"
    write_text(target, "old")
    with pytest.raises(RuntimeError):
        with replacing(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]
    with replacing(target) as first, replacing(target) as second:
        assert first != second and first.suffix == ".png" and first.parent == tmp_path
        first.write_text("1")
        second.write_text("2")
    assert target.read_text() == "1"  # the outer one replaced last


def test_folder_lock_refuses_a_second_run(tmp_path: Path) -> None:
    with folder_lock(tmp_path, "first"):  # flock: a second open file conflicts, even in one process
        with pytest.raises(OutputError, match="in use by another run"):
            with folder_lock(tmp_path, "second"):
                pass
    with folder_lock(tmp_path, "second"):  # free again once released
        pass


def test_written_files_get_the_mode_a_plain_open_gives(tmp_path: Path) -> None:
    """mkstemp makes 0600 files: reports written through it were unreadable to other users."""
    from centerpoint_deploy.outputs import write_text

    mask = os.umask(0o022)
    try:
        path = write_text(tmp_path / "report.md", "x")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644
