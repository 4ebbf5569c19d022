"""Benchmark reports as a rich table, Markdown (pasteable into docs/benchmarks.md) and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from centerpoint_deploy.benchmark.results import BenchmarkReport, VariantResult
from centerpoint_deploy.outputs import write_text

#: Stage columns shown in the per-stage table, in pipeline order (others are listed after).
STAGE_ORDER = ("read", "upload", "voxelize", "decorate", "encoder", "scatter", "backbone_neck_head", "decode",
               "nms", "output")


#: x-axis label of each scaling axis.
AXIS_LABELS = {"points": "points per frame (random)", "sweeps": "points per frame (merged synthetic sweeps)",
               "grid": "BEV cells per side"}


def stage_names(report: BenchmarkReport) -> list[str]:
    """Stages measured by any variant, in pipeline order, without the ``"sum of stages"`` total."""
    seen = {name for r in report.results for name in r.stages if name != "sum of stages"}
    return [s for s in STAGE_ORDER if s in seen] + sorted(seen - set(STAGE_ORDER))


def _options(result: VariantResult) -> str:
    return ", ".join(k if v is True else f"{k}={v}" for k, v in result.options.items() if v not in (False, None)) or "-"


def summary_rows(report: BenchmarkReport) -> list[list[str]]:
    """One row per variant: name, backend, precision, options, e2e p50/p90/p99, fps, stage sum, peak memory,
    load + first call (compilation)."""
    rows = []
    for r in report.results:
        e2e = r.end_to_end
        total = r.stages.get("sum of stages")
        rows.append([r.name, r.backend, r.precision, _options(r), f"{e2e.p50:.2f}", f"{e2e.p90:.2f}", f"{e2e.p99:.2f}",
                     f"{e2e.fps:.1f}", f"{total.p50:.2f}" if total else "-",
                     f"{r.peak_memory_mb:.0f}" if r.peak_memory_mb is not None else "-",
                     f"{r.first_call_s:.1f}" if r.first_call_s is not None else "-"])
    return rows


SUMMARY_HEADER = ["variant", "backend", "precision", "options", "e2e p50 ms", "p90", "p99", "fps",
                  "stage sum p50", "peak MiB", "first call s"]


def stage_rows(report: BenchmarkReport) -> tuple[list[str], list[list[str]]]:
    """Header and rows of per-stage p50 latency (ms), one row per variant."""
    names = stage_names(report)
    rows = [[r.name, *(f"{r.stages[s].p50:.3f}" if s in r.stages else "-" for s in names)] for r in report.results]
    return ["variant", *names], rows


def rich_tables(report: BenchmarkReport) -> list[Table]:
    """The summary and per-stage tables for the terminal."""
    frame = report.frame
    summary = Table(title=f"{report.config}: {frame.get('num_points')} points, {report.machine.get('gpu') or report.machine.get('cpu')}")
    for column in SUMMARY_HEADER:
        summary.add_column(column, justify="left" if column in ("variant", "backend", "precision", "options") else "right")
    for row in summary_rows(report):
        summary.add_row(*row)
    header, rows = stage_rows(report)
    stages = Table(title="per-stage p50 (ms)")
    for column in header:
        stages.add_column(column, justify="left" if column == "variant" else "right")
    for row in rows:
        stages.add_row(*row)
    tables = [summary, stages]
    if report.skipped:
        skipped = Table(title="skipped")
        skipped.add_column("variant")
        skipped.add_column("reason")
        for name, reason in report.skipped.items():
            skipped.add_row(name, reason)
        tables.append(skipped)
    return tables


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(report: BenchmarkReport) -> str:
    """The report as Markdown: machine line, summary table, per-stage table, scaling, skipped variants."""
    m = {key: "not installed" if value is None else value for key, value in report.machine.items()}
    hardware = (f"{m.get('gpu')} (driver {m.get('driver')}, CUDA {m.get('cuda')}, cuDNN {m.get('cudnn')})"
                if report.machine.get("gpu") else
                f"{m.get('cpu')}, {m.get('cpu_cores')} cores ({m.get('torch_threads')} torch threads)")
    frame = report.frame
    parts = [
        f"### {report.config}: {frame.get('source')} frame, {frame.get('num_points')} points, "
        f"{report.results[0].num_voxels if report.results else '?'} pillars",
        "",
        f"Machine: {hardware}; torch {m.get('torch')}, onnxruntime {m.get('onnxruntime')}, "
        f"TensorRT {m.get('tensorrt')}, Python {m.get('python')}. "
        f"{report.settings.get('warmup')} warm-up + {report.settings.get('iterations')} timed iterations.",
        "",
        _markdown_table(SUMMARY_HEADER, summary_rows(report)),
        "",
        "Per-stage p50 (ms), staged run (marks between stages, one synchronisation per frame; "
        "`pipeline_graph` variants: each stage captured as its own CUDA graph and replayed):",
        "",
        _markdown_table(*stage_rows(report)),
    ]
    if report.scaling:
        parts += ["", "Scaling (end-to-end p50 ms):", "", _markdown_table(*scaling_rows(report))]
    if report.skipped:
        parts += ["", "Skipped:", ""] + [f"- {name}: {reason}" for name, reason in report.skipped.items()]
    return "\n".join(parts) + "\n"


def scaling_rows(report: BenchmarkReport) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the scaling runs: axis, size, pillars, then one p50 column per variant."""
    variants = list(dict.fromkeys(p.variant for p in report.scaling))
    cells: dict[tuple[str, int], dict[str, str]] = {}
    voxels: dict[tuple[str, int], int] = {}
    for p in report.scaling:
        cells.setdefault((p.axis, p.value), {})[p.variant] = f"{p.end_to_end.p50:.2f}"
        voxels[(p.axis, p.value)] = p.num_voxels
    rows = [[axis, str(value), str(voxels[(axis, value)]), *(cells[(axis, value)].get(v, "-") for v in variants)]
            for axis, value in cells]
    return ["axis", "size", "pillars", *variants], rows


def write_report(report: BenchmarkReport, out_dir: Path | str, *, plots: bool = True) -> dict[str, Path]:
    """Write ``benchmark.json``, ``benchmark.md`` and (with ``plots``) ``stages.png`` / ``scaling.png``.

    Returns:
        ``{kind: path}`` of the files written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {"json": out / "benchmark.json", "markdown": out / "benchmark.md"}
    write_text(written["json"], json.dumps(report.to_dict(), indent=2))
    write_text(written["markdown"], to_markdown(report))
    if plots and report.results:
        written["stages"] = plot_stages(report, out / "stages.png")
    if plots and report.scaling:
        written["scaling"] = plot_scaling(report, out / "scaling.png")
    return written


def plot_stages(report: BenchmarkReport, path: Path) -> Path:
    """Stacked horizontal bars: per-stage p50 of every variant, with its end-to-end p50 marked."""
    from matplotlib import colormaps

    from centerpoint_deploy.figures import new_figure, save_figure

    names = stage_names(report)
    variants = report.results
    fig = new_figure(figsize=(12, 0.5 * len(variants) + 2.2))
    ax = fig.add_subplot(1, 1, 1)
    colors = colormaps["tab10"]
    for row, result in enumerate(variants):
        left = 0.0
        for index, stage in enumerate(names):
            width = result.stages[stage].p50 if stage in result.stages else 0.0
            ax.barh(row, width, left=left, color=colors(index % 10), label=stage if row == 0 else None)
            left += width
        ax.plot([result.end_to_end.p50], [row], marker="|", markersize=18, color="black",
                label="end to end p50" if row == 0 else None)
    ax.set_yticks(range(len(variants)), [r.name for r in variants])
    ax.invert_yaxis()
    ax.set_xlabel("latency p50 (ms)")
    ax.set_title(f"{report.config}: {report.frame.get('num_points')} points")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_scaling(report: BenchmarkReport, path: Path) -> Path:
    """End-to-end p50 against points per frame and against grid size (one panel per axis, log-log)."""
    from centerpoint_deploy.figures import new_figure, save_figure

    axes_names = list(dict.fromkeys(p.axis for p in report.scaling))
    fig = new_figure(figsize=(5.5 * len(axes_names), 4))
    axes = fig.subplots(1, len(axes_names), squeeze=False)
    for ax, axis in zip(axes[0], axes_names):
        for variant in dict.fromkeys(p.variant for p in report.scaling if p.axis == axis):
            points = sorted((p.value, p.end_to_end.p50) for p in report.scaling if p.axis == axis and p.variant == variant)
            ax.plot([v for v, _ in points], [t for _, t in points], marker="o", label=variant)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(AXIS_LABELS.get(axis, axis))
        ax.set_ylabel("end-to-end p50 (ms)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)
