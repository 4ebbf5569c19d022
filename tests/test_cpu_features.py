"""CPU feature detection for the default benchmark set."""

from __future__ import annotations

from pathlib import Path

from centerpoint_deploy.cpu_features import cpu_flags, int8_sums_exact


def test_cpu_flags(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n\nprocessor\t: 1\nflags\t: fpu\n")
    assert cpu_flags(info) == {"fpu", "sse", "avx2", "avx512f", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") is None


def test_int8_sums_exact_only_with_vnni_on_x86() -> None:
    assert int8_sums_exact(frozenset({"avx2", "avx512_vnni"}), "x86_64") == (True, "")
    assert int8_sums_exact(frozenset({"avx2", "avx_vnni"}), "AMD64")[0]
    exact, reason = int8_sums_exact(frozenset({"avx2", "avx512bw"}), "x86_64")
    assert not exact and "no VNNI" in reason
    assert not int8_sums_exact(None, "x86_64")[0]  # not known: not assumed
    assert int8_sums_exact(frozenset({"asimd"}), "aarch64") == (True, "")
