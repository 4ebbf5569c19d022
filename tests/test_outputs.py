"""File names derived from data stay inside the output folder (``centerpoint_deploy.outputs``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from centerpoint_deploy.outputs import MAX_NAME_LENGTH, OutputPathError, path_inside, safe_file_name

HOSTILE = ["x/../../../../../../../../../../tmp/PWNED", "..", ".", "", "/etc/passwd", "a\\..\\b", ".hidden",
           "nul\0byte", "new\nline", "é" * 300, "$\\frac{a}{$", "~/x", "a" * (MAX_NAME_LENGTH + 1)]


def test_plain_names_are_unchanged() -> None:
    for name in ("00001_3f2a9c", "scene-0001_frame.7", "A-b_c"):
        assert safe_file_name(name) == name


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_becomes_one_plain_name_inside_the_folder(tmp_path: Path, text: str) -> None:
    name = safe_file_name(text)
    assert name and "/" not in name and "\\" not in name and "\0" not in name and not name.startswith(".")
    assert len(name) <= MAX_NAME_LENGTH
    path = path_inside(tmp_path, "bev", name + ".png")
    assert path.resolve().parent == (tmp_path / "bev").resolve()


def test_different_texts_get_different_names() -> None:
    names = {safe_file_name(t) for t in HOSTILE + ["x_.._tmp", "x/.._tmp", "x\\.._tmp"]}
    assert len(names) == len(HOSTILE) + 3


def test_path_inside_refuses_escapes(tmp_path: Path) -> None:
    with pytest.raises(OutputPathError, match="outside the output folder"):
        path_inside(tmp_path / "out", "..", "PWNED.png")
    (tmp_path / "out").mkdir()
    os.symlink(tmp_path, tmp_path / "out" / "bev")  # a link inside --out pointing out of it
    with pytest.raises(OutputPathError, match="outside the output folder"):
        path_inside(tmp_path / "out", "bev", "x.png")
