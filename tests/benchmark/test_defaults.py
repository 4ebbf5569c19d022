"""The default benchmark set: bf16 only where the CPU has native bf16, skipped with the reason elsewhere."""

from __future__ import annotations

import pytest
import torch

from centerpoint_deploy.benchmark import defaults
from centerpoint_deploy.benchmark.variants import DEFAULT_VARIANTS


def test_bf16_skipped_without_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(defaults, "native_bf16", lambda: (False, "no avx512_bf16"))
    variants, skipped = defaults.default_variants(torch.device("cpu"))
    assert skipped and all(":bf16" in v for v in skipped) and set(skipped.values()) == {"no avx512_bf16"}
    assert not any(":bf16" in v for v in variants) and set(variants) | set(skipped) == set(DEFAULT_VARIANTS["cpu"])


def test_bf16_kept_with_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(defaults, "native_bf16", lambda: (True, ""))
    assert defaults.default_variants(torch.device("cpu")) == (list(DEFAULT_VARIANTS["cpu"]), {})
    assert defaults.default_variants(torch.device("cuda")) == (list(DEFAULT_VARIANTS["cuda"]), {})
