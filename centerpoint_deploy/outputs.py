"""Names and paths of the files that commands write under their output folder (``--out``).

Two rules keep every written file inside that folder:

- A file name built from data (a sample token, a scene name, anything read from a dataset or
  a user's file) goes through :func:`safe_file_name` first: it keeps letters, digits, ``_ . -``
  and never yields ``..`` or a path separator.
- The path is then built with :func:`path_inside`, which refuses one that resolves outside the
  folder (a symbolic link inside it that points elsewhere, or a name that was not sanitised).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from centerpoint_deploy.errors import CenterPointError

#: Longest name :func:`safe_file_name` returns (ext4 allows 255 bytes; suffixes are added by callers).
MAX_NAME_LENGTH = 96
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*$")
_DIGEST_CHARS = 10


class OutputPathError(CenterPointError):
    """A file about to be written would land outside the output folder."""


def safe_file_name(text: str) -> str:
    """A file name (no folder part) that stands for ``text`` and stays where it is put.

    ``text`` is returned unchanged when it is already a plain name: letters, digits, ``_ . -``,
    not starting with a dot, at most :data:`MAX_NAME_LENGTH` characters. Anything else becomes
    its safe characters (others replaced by ``_``, leading dots dropped, cut to length) followed
    by ``-`` and 10 hex digits of its SHA-256, so two different texts do not share a name.

    Examples: ``"0001_a3f9"`` -> ``"0001_a3f9"``; ``"x/../../tmp/PWNED"`` ->
    ``"x_.._.._tmp_PWNED-<hash>"``; ``".."`` -> ``"-<hash>"``.
    """
    text = str(text)
    if len(text) <= MAX_NAME_LENGTH and _SAFE_NAME.match(text):
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST_CHARS]
    stem = _UNSAFE.sub("_", text).lstrip(".")[: MAX_NAME_LENGTH - _DIGEST_CHARS - 1]
    return f"{stem}-{digest}"


def path_inside(root: str | Path, *parts: str) -> Path:
    """``root / parts...``, after checking that it resolves to a place inside ``root``.

    Args:
        root: the output folder (need not exist yet).
        parts: path components below it (file names from data: pass them through
            :func:`safe_file_name` first).

    Raises:
        OutputPathError: the path resolves outside ``root`` (naming both).
    """
    root = Path(root)
    target = root.joinpath(*parts)
    resolved_root = root.resolve()
    resolved = target.resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise OutputPathError(f"refusing to write '{target}': it resolves to '{resolved}', outside the output "
                              f"folder '{resolved_root}'")
    return target
