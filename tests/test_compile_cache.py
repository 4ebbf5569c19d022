"""torch.compile's cache folder: persistent by default, the user's choice kept."""

from __future__ import annotations

from pathlib import Path

import os

import pytest

from centerpoint_deploy.compile_cache import CACHE_ENV, use_persistent_compile_cache


def test_default_under_the_user_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = use_persistent_compile_cache()
    assert folder == tmp_path / "centerpoint_deploy" / "torchinductor"
    assert os.environ[CACHE_ENV] == str(folder)


def test_user_setting_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert use_persistent_compile_cache() == tmp_path / "mine"


def test_compile_workers_are_released_only_where_inductor_started_them(monkeypatch) -> None:
    import sys
    import types

    from centerpoint_deploy.compile_cache import release_compile_workers

    calls = []
    fake = types.ModuleType("torch._inductor.async_compile")
    fake.shutdown_compile_workers = lambda: calls.append("shutdown")
    monkeypatch.setitem(sys.modules, "torch._inductor.async_compile", fake)
    release_compile_workers()
    assert calls == ["shutdown"]
    monkeypatch.delitem(sys.modules, "torch._inductor.async_compile")
    release_compile_workers()  # inductor never imported: nothing to do, nothing imported
    assert calls == ["shutdown"] and "torch._inductor.async_compile" not in sys.modules
