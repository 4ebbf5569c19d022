"""Keep every path named by dataset records inside the dataset root.

Point-file names come from data (T4 ``sample_data.filename``, info-pickle ``lidar_path``,
split-file entries). A name such as ``../../x.bin`` or ``/abs/x.bin`` would read a file
outside the dataset, so every reader resolves such names through :func:`contained_path`.

The check is lexical (``os.path.normpath``): symbolic links inside the root are followed as
usual (datasets are often assembled from links), but a name cannot climb out of the root.
"""

from __future__ import annotations

import os
from pathlib import Path

from centerpoint_deploy.errors import DatasetError


def contained_path(root: str | Path, name: str, record: str) -> Path:
    """``root / name``, refused unless it stays inside ``root``.

    Args:
        root: the dataset root the name is relative to.
        name: the path as the record stores it; an absolute path is accepted only when it
            lies inside ``root``.
        record: what stores the name, for the message (e.g. ``"sample_data 3f2a.. field 'filename'"``).

    Returns:
        The joined path (not resolved; it need not exist).

    Raises:
        DatasetError: ``name`` is not a non-empty string, holds a NUL byte, or leaves ``root``.
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        raise DatasetError(f"{record}: path {name!r} is invalid: expected a non-empty file name relative to {root}")
    base = os.path.normpath(os.path.abspath(root))
    target = os.path.normpath(os.path.join(base, name))
    if os.path.commonpath([base, target]) != base or target == base:
        raise DatasetError(f"{record}: path {name!r} is outside the dataset root {base}; allowed: a path "
                           "relative to the root that stays inside it (no '..' above it, no absolute path elsewhere)")
    return Path(target)
