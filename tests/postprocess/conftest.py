"""Fixtures of the post-processing tests: the tiny preset and variants (shared with preprocess)."""

from preprocess.conftest import make_config, tiny_config  # noqa: F401  (pytest fixtures)
