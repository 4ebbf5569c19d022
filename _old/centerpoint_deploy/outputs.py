"""Where the package writes: output locations checked up front, files replaced atomically,
data-derived names sanitised, every written path kept inside its output folder.

Every command checks its output location with :func:`prepare_dir` / :func:`prepare_file`
before any compute, so an unusable ``--out`` is one ``error:`` line, not a traceback after a
long run. Every file is written through :func:`replacing` (or :func:`write_text` /
:func:`write_bytes`): a unique temporary name beside the target, then ``os.replace``, so a
reader never sees a half-written file and two runs never share a temporary name. Commands
that write a whole folder hold :func:`folder_lock` on it, so a second run into the same
``--out`` is refused instead of interleaving files.

Only the standard library: any layer may import this module.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator

from centerpoint_deploy.errors import OutputError

#: Longest file-name component :func:`safe_name` returns.
MAX_NAME = 96
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def prepare_dir(path: str | Path, option: str = "--out") -> Path:
    """Check, before any work, that the output folder ``path`` can be written: it is a folder
    or can be created as one, in a writable place. Nothing is created (a run that fails a
    later check leaves no empty folder); :func:`folder_lock` creates it when writing starts.

    Args:
        path: the folder.
        option: how the user named it, for the message (e.g. ``--out``).

    Returns:
        ``path`` as a :class:`Path`.

    Raises:
        OutputError: ``path`` is an existing file, a parent is a file, or the folder cannot be
            created or written (read-only, no permission, full disk).
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{option} {folder} is an existing file, not a folder; give a folder path")
    existing = folder
    while not existing.exists():  # the nearest existing ancestor ('.' for a relative path) receives it
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{option} {folder}: cannot create the folder ({existing} is a file)")
    _probe(existing, option)
    return folder


def prepare_file(path: str | Path, option: str = "--output") -> Path:
    """Check that the file ``path`` can be written: its folder is created and writable, and
    ``path`` itself is not a folder.

    Raises:
        OutputError: as :func:`prepare_dir`, or ``path`` is an existing folder.
    """
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"{option} {target} is a folder; give a file path")
    prepare_dir(target.parent, f"the folder of {option} {target}")
    return target


def _probe(folder: Path, option: str) -> None:
    """Create and delete a uniquely named file in ``folder`` (``os.access`` is wrong for root and ACLs)."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".write-check-", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"{option} {folder} is not writable ({_reason(exc)})") from exc
    os.close(fd)
    os.unlink(name)


def inside(root: str | Path, path: str | Path) -> Path:
    """``path``, after checking that it resolves to a location inside the folder ``root``.

    Raises:
        OutputError: ``path`` escapes ``root`` (``..`` components, an absolute name, a symlink).
    """
    base = Path(root).resolve()
    target = Path(path)
    resolved = (target if target.is_absolute() else Path(root) / target).resolve()
    if resolved != base and base not in resolved.parents:
        raise OutputError(f"refusing to write {path}: it lies outside the output folder {root}")
    return target


def safe_name(text: str) -> str:
    """A file-name component made from data (a sample token, a scene name, a backend label).

    Runs of characters other than letters, digits, ``.``, ``_`` and ``-`` become ``_``; leading
    dots are dropped (no ``..``, no hidden files); an empty result becomes ``_``; a name longer
    than :data:`MAX_NAME` keeps its start and gets a hash of the whole text, so distinct
    inputs stay distinct. E.g. ``safe_name("x/../../tmp/PWNED") == "x_.._.._tmp_PWNED"``.
    """
    name = _UNSAFE.sub("_", text).lstrip(".") or "_"
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        name = f"{name[:MAX_NAME - 17]}-{digest}"
    return name


def _umask() -> int:
    """The process's umask (read by setting it, then restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a fresh, unique temporary path beside ``path``; on a clean exit move it onto ``path``.

    The temporary name keeps ``path``'s suffix (writers that choose the format by suffix
    still work). On an exception the temporary file is removed and ``path`` is untouched.
    The folder is created when missing (check it first with :func:`prepare_dir`).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=f".tmp{target.suffix}")
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        if temporary.exists():  # mkstemp creates 0600; give the file the mode a plain open() would
            temporary.chmod(0o666 & ~_umask())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`replacing`); returns ``path``."""
    with replacing(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`replacing`); returns ``path``."""
    return write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def folder_lock(folder: str | Path, command: str) -> Iterator[None]:
    """Create the output ``folder`` if needed and hold an exclusive lock on it while ``command``
    writes into it.

    The lock is an advisory ``flock`` on the folder itself (no lock file is left in it),
    released when the process ends however it ends (no stale locks).

    Raises:
        OutputError: another run holds the folder.
    """
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the folder ({_reason(exc)})") from exc
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise OutputError(f"{folder} is in use by another run; wait for it to finish or choose another "
                              f"output folder for '{command}'") from exc
        yield
    finally:
        os.close(fd)
