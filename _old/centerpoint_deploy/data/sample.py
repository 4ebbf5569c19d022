"""A small synthetic validation set, generated once into a cache folder.

``default_sample_dir()`` returns ``<cache>/centerpoint_deploy/sample-<seed>-<version>``
(``<cache>`` = ``$XDG_CACHE_HOME`` or ``~/.cache``), generating it on first use: 2 scenes x
10 key frames of the default 64-beam sensor, one lead-in sweep each. Generation writes into
a temporary sibling folder and renames it, so concurrent first uses do not clash.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from centerpoint_deploy.data.synthetic import LidarConfig, WorldConfig, generate_dataset

#: Bump when the generator's output changes, so stale caches are not reused.
SAMPLE_VERSION = 4


@dataclass(frozen=True)
class SampleSpec:
    """What the sample set holds."""

    seed: int = 7
    num_scenes: int = 2
    frames_per_scene: int = 10
    sensor: LidarConfig = field(default_factory=LidarConfig)
    world: WorldConfig = field(default_factory=WorldConfig)

    @property
    def version(self) -> str:
        """``v<SAMPLE_VERSION>-<digest of the spec>``."""
        return f"v{SAMPLE_VERSION}-{hashlib.sha1(repr(self).encode()).hexdigest()[:8]}"


def default_cache_root() -> Path:
    """``$XDG_CACHE_HOME/centerpoint_deploy`` or ``~/.cache/centerpoint_deploy``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "centerpoint_deploy"


def sample_dir(spec: SampleSpec = SampleSpec(), cache_root: str | Path | None = None) -> Path:
    """The folder of scenes for ``spec``, generated into ``cache_root`` if not there yet."""
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    target = root / f"sample-{spec.seed}-{spec.version}"
    if (target / "COMPLETE").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=root))
    try:
        generate_dataset(staging, spec.num_scenes, spec.frames_per_scene, spec.seed, spec.sensor, spec.world)
        (staging / "COMPLETE").write_text(repr(spec) + "\n")
        if target.exists() and not (target / "COMPLETE").is_file():
            shutil.rmtree(target)  # an interrupted earlier attempt
        try:
            staging.rename(target)
        except OSError:
            if not (target / "COMPLETE").is_file():  # not a concurrent winner: a real failure
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def default_sample_dir() -> Path:
    """The default sample set (see module doc), generated on first use."""
    return sample_dir()
