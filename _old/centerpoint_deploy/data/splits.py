"""Split files: which scenes of a dataset root form train / val / test.

Two formats:

- YAML: a mapping ``split name -> list of scene entries`` (AWML's dataset-version files use
  ``train``, ``val``, ``test``) or a plain list.
- Text (``.txt``): one scene entry per line; blank lines and ``#`` comments ignored.

A scene entry is a folder name under the dataset root, optionally followed by a version
(``<scene id> <version>``, as in AWML files), naming ``root/<scene id>/<version>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import yaml

from centerpoint_deploy.errors import DatasetError

SPLIT_SUFFIXES = (".yaml", ".yml", ".txt")


def split_spec(spec: str | Path) -> tuple[Path, str | None] | None:
    """Recognise ``FILE.yaml``, ``FILE.txt`` or ``FILE.yaml:SPLIT``; None if ``spec`` is no split file."""
    text = str(spec)
    path = Path(text)
    if path.suffix.lower() in SPLIT_SUFFIXES and path.is_file():
        return path, None
    head, sep, key = text.rpartition(":")
    if sep and Path(head).suffix.lower() in SPLIT_SUFFIXES and Path(head).is_file():
        return Path(head), key
    return None


def read_split(path: str | Path, split: str | None = None) -> list[str]:
    """Scene entries listed by a split file.

    Args:
        path: ``.yaml``/``.yml``/``.txt`` file.
        split: the key to read from a YAML mapping; may be omitted when it has one key.

    Returns:
        Scene entries, relative paths such as ``scene-0001`` or ``<scene id>/<version>``.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"split file {path} does not exist")
    if path.suffix.lower() == ".txt":
        if split is not None:
            raise DatasetError(f"split file {path} is a plain list; it has no split '{split}'")
        lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
        entries: object = [line for line in lines if line]
    else:
        try:
            content = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise DatasetError(f"{path}: malformed YAML ({exc})") from exc
        entries = _select(content, split, path)
    if not isinstance(entries, list) or not all(isinstance(e, (str, int)) for e in entries):
        raise DatasetError(f"{path}: a split must be a list of scene names, got {entries!r:.200}")
    return ["/".join(str(e).split()) for e in entries]


def _select(content: object, split: str | None, path: Path) -> object:
    if isinstance(content, list):
        if split is not None:
            raise DatasetError(f"split file {path} is a plain list; it has no split '{split}'")
        return content
    if not isinstance(content, Mapping) or not content:
        raise DatasetError(f"{path}: expected a mapping split -> scene list, or a list, got {type(content).__name__}")
    if split is None:
        if len(content) != 1:
            raise DatasetError(f"{path} holds splits {list(content)}; name one (e.g. '{path}:{next(iter(content))}')")
        split = next(iter(content))
    if split not in content:
        raise DatasetError(f"{path} has no split '{split}'; it has {list(content)}")
    return content[split] or []


def write_split(path: str | Path, splits: Mapping[str, Sequence[str]]) -> Path:
    """Write a YAML split file ``{split: [scene names]}``; returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({k: list(v) for k, v in splits.items()}, sort_keys=False))
    return path


def make_split(scene_names: Sequence[str], *, val_fraction: float = 0.5, seed: int = 0,
               val_scenes: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Divide scenes into ``{"train": [...], "val": [...]}`` (each in input order).

    Args:
        scene_names: all scenes.
        val_fraction: share of scenes drawn (seeded) into val when ``val_scenes`` is not given;
            at least one scene stays in train when there are two or more.
        seed: seed of the draw.
        val_scenes: explicit val scenes (must be among ``scene_names``).
    """
    names = list(scene_names)
    if val_scenes is not None:
        unknown = sorted(set(val_scenes) - set(names))
        if unknown:
            raise DatasetError(f"val scenes {unknown} are not among the scenes {names}")
        chosen = set(val_scenes)
    else:
        if not 0.0 <= val_fraction <= 1.0:
            raise DatasetError(f"val_fraction = {val_fraction} is invalid: must lie in [0, 1]")
        count = int(round(val_fraction * len(names)))
        count = min(count, len(names) - 1) if len(names) > 1 else count
        order = np.random.default_rng(seed).permutation(len(names))
        chosen = {names[i] for i in order[:count]}
    return {"train": [n for n in names if n not in chosen], "val": [n for n in names if n in chosen]}
