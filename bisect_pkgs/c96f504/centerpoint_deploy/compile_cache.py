"""A persistent home for torch.compile's caches, so a second run reuses the first one's kernels.

Inductor keeps its FX-graph cache, autotuning results and generated kernels under
``TORCHINDUCTOR_CACHE_DIR`` (default ``/tmp/torchinductor_<user>``, which many machines and
containers wipe). :func:`use_persistent_compile_cache` points it at
``$XDG_CACHE_HOME/centerpoint_deploy/torchinductor`` (``~/.cache/...`` without XDG) unless the
user set the variable. The command line calls it at start-up; it only sets an environment
variable (inductor reads it when it first compiles), so it costs nothing when nothing compiles.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The variable inductor reads for its cache folder.
CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


def default_compile_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/centerpoint_deploy/torchinductor``, ``~/.cache/...`` without XDG."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "centerpoint_deploy" / "torchinductor"


def use_persistent_compile_cache() -> Path:
    """Set :data:`CACHE_ENV` to :func:`default_compile_cache_dir` unless already set; return the folder used."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen:
        return Path(chosen)
    folder = default_compile_cache_dir()
    os.environ[CACHE_ENV] = str(folder)
    return folder
