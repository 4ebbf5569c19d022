"""Benchmarks: per-stage and end-to-end latency of pipeline variants, scaling, reports.

- :mod:`.timing`: clocks (CUDA events / perf_counter), repeated measurement, percentiles;
- :mod:`.inputs`: a synthetic 64-beam LiDAR frame and random clouds;
- :mod:`.run`: staged and end-to-end runs, scaling, :func:`~.run.benchmark_variants`;
- :mod:`.results`, :mod:`.render`: JSON records, Markdown, rich tables, plots;
- :mod:`.captured`: per-stage time of the whole-pipeline CUDA graph.
"""
