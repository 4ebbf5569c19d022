"""Present a :class:`~centerpoint_deploy.verify.run.VerificationReport`: terminal, JSON, Markdown, plots.

- :func:`print_report`: rich tables (one row per backend and stage, then failures and bisection);
- :func:`write_reports`: ``verification.json`` (everything), ``verification.md`` (summary),
  ``bisection_<backend>_<part>.png`` (per-layer error growth) and ``bev_diff_<backend>.png``
  (``|diff|`` over the grid of the worst head output), all under one directory.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from centerpoint_deploy.outputs import write_text
from centerpoint_deploy.verify.bisect import BisectionReport
from centerpoint_deploy.verify.boxes import flips_text
from centerpoint_deploy.verify.run import BackendResult, VerificationReport

_OK, _FAIL = "PASS", "FAIL"
_MIN_WIDTH = 150  # columns: the stage tables do not fit 80; rich wraps them unreadably


def _fmt(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3g}"


def _fmt_cosine(value: float) -> str:
    """Six decimals: a cosine of 0.99996 is a real difference that ``.3g`` would print as 1."""
    return "-" if math.isnan(value) else f"{value:.6f}"


def _stage_rows(result: BackendResult) -> list[list[str]]:
    """Rows ``[stage, output, max abs, mean abs, cosine, over tol, worst at, verdict]`` worst frame first."""
    rows = []
    per_output: dict[tuple[str, str], list[Any]] = {}
    for frame in result.frames:
        for stage, comparisons in (("encoder", frame.encoder), ("head", frame.head)):
            for c in comparisons:
                per_output.setdefault((stage, c.name), []).append(c)
    for (stage, name), comparisons in per_output.items():
        worst = max(comparisons, key=lambda c: (not c.passed, -1 if math.isnan(c.max_abs) else c.max_abs))
        rows.append([stage, name, _fmt(worst.max_abs), _fmt(worst.mean_abs), _fmt_cosine(worst.cosine),
                     _fmt(worst.share_over), worst.worst_location,
                     _OK if all(comparisons) else f"{_FAIL} ({sum(not c for c in comparisons)}/{len(comparisons)})"])
    for kind, attr in (("boxes", "boxes"), ("boxes e2e", "end_to_end")):
        comparisons = [getattr(f, attr) for f in result.frames]
        if not comparisons:
            continue
        matched = min(c.matched_share for c in comparisons)
        centre = max((c.max_center for c in comparisons if not math.isnan(c.max_center)), default=math.nan)
        near = sum(c.unmatched_near_threshold for c in comparisons)
        rows.append([kind, f"matched {matched:.1%}", f"centre {_fmt(centre)} m", "", "",
                     f"{near} near thr{flips_text(comparisons)}", "", _OK if all(comparisons) else f"{_FAIL} ({sum(not c for c in comparisons)}/{len(comparisons)})"])
    return rows


def layer_checks_line(result: BackendResult) -> str:
    """One sentence on the INT8 layers run alone (``""`` when there were none)."""
    checks = result.layer_checks
    if not checks:
        return ""
    worst = min(checks, key=lambda c: c.comparison.snr_db)
    passed = sum(c.passed for c in checks)
    return (f"INT8 layers alone on the graph's own inputs: {passed} of {len(checks)} pass; lowest SNR "
            f"{worst.comparison.snr_db:.1f} dB ({worst.module})")


def print_report(report: VerificationReport, console: Console | None = None) -> None:
    """Print the verdict, per-stage tables, failures and bisection tables."""
    console = console or Console(width=max(Console().width, _MIN_WIDTH))
    tol = report.tolerances.default
    console.print(f"[bold]Reference[/] {escape(report.reference)} on {escape(report.reference_device)}; "
                  f"tolerance atol {tol.atol:g}, rtol {tol.rtol:g}"
                  + (escape(f", overrides {sorted(report.tolerances.per_output)}") if report.tolerances.per_output else ""))
    for check in report.reference_device_check:
        if not check.passed:
            console.print(f"[red]reference device check failed:[/] {escape(f'{check.backend}: {check.reason}')}")
    for result in report.backends.values():
        verdict = "[green]PASS[/]" if result.passed else "[red]FAIL[/]"
        parts = result.encoder_backend if result.encoder_backend == result.head_backend \
            else f"{result.encoder_backend} + {result.head_backend}"
        table = Table(title=escape(f"{result.name} ({parts}, rot_y_axis_reference={result.rot_y_axis_reference}): ")
                      + verdict, title_justify="left")
        for column in ("stage", "output", "max |d|", "mean |d|", "cosine", "share over", "worst at", "verdict"):
            table.add_column(column)
        for row in _stage_rows(result):
            style = "red" if row[-1].startswith(_FAIL) else None
            table.add_row(*map(Text, row), style=style)
        console.print(table)
        if result.layer_checks:
            console.print(escape(layer_checks_line(result)), highlight=False)
        for line in result.failures():
            console.print(f"  [red]-[/] {escape(line)}", highlight=False)
        for bisection in result.bisections:
            console.print(bisection_table(bisection))
    console.print("[bold green]ALL PASSED[/]" if report.passed else "[bold red]VERIFICATION FAILED[/]")


def bisection_table(bisection: BisectionReport) -> Table:
    """Per-layer growth table; the first failing layer is marked."""
    first = bisection.first_failure
    table = Table(title=escape(f"bisection of {bisection.part} ({Path(bisection.onnx_path).name}): {bisection.summary}"),
                  title_justify="left")
    for column in ("#", "layer", "max |d|", "mean |d|", "cosine", "passed"):
        table.add_column(column)
    for i, layer in enumerate(bisection.layers):
        c = layer.comparison
        mark = " <- first divergence" if layer is first else ""
        table.add_row(*map(Text, (str(i), layer.probe.label + mark, _fmt(c.max_abs), _fmt(c.mean_abs),
                                  _fmt_cosine(c.cosine), "yes" if c else "NO")), style="red" if not c else None)
    return table


def markdown_summary(report: VerificationReport) -> str:
    """A short Markdown document: verdict, per-backend stage table, failures, bisection."""
    lines = [f"# Verification: {'PASSED' if report.passed else 'FAILED'}", "",
             f"Reference: `{report.reference}` on `{report.reference_device}`. "
             f"Tolerance: atol {report.tolerances.default.atol:g}, rtol {report.tolerances.default.rtol:g} "
             "(an element fails when |test − ref| > atol + rtol·|ref|).", ""]
    if report.tolerances.per_output:
        lines += ["Overrides: " + ", ".join(f"`{k}` atol {v.atol:g} rtol {v.rtol:g}"
                                           for k, v in report.tolerances.per_output.items()), ""]
    settings = ", ".join(f"`{k}={v}`" for k, v in report.settings.items())
    lines += [f"Settings: {settings}", ""]
    for result in report.backends.values():
        lines += [f"## {result.name}: {'PASS' if result.passed else 'FAIL'}", "",
                  f"`{result.encoder_backend}` + `{result.head_backend}`, rot_y_axis_reference="
                  f"{result.rot_y_axis_reference}, {len(result.frames)} frame(s).", "",
                  "| stage | output | max abs | mean abs | cosine | share over | worst at | verdict |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in _stage_rows(result)]
        if result.layer_checks:
            lines += ["", layer_checks_line(result) + "."]
        failures = result.failures()
        if failures:
            lines += ["", "Failures:", ""] + [f"- {line}" for line in failures]
        for bisection in result.bisections:
            lines += ["", f"### Bisection of the {bisection.part}", "", bisection.summary, "",
                      "| # | layer | max abs | mean abs | cosine | passed |", "|---|---|---|---|---|---|"]
            lines += [f"| {i} | `{layer.probe.label}` | {_fmt(layer.comparison.max_abs)} | "
                      f"{_fmt(layer.comparison.mean_abs)} | {_fmt_cosine(layer.comparison.cosine)} | "
                      f"{'yes' if layer.comparison else '**no**'} |" for i, layer in enumerate(bisection.layers)]
        lines.append("")
    return "\n".join(lines)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def plot_layer_growth(bisection: BisectionReport, path: Path) -> Path:
    """Max and mean |diff| per probed layer (log scale), first failing layer marked; PNG."""
    from centerpoint_deploy.figures import new_figure, save_figure

    labels = [layer.probe.module for layer in bisection.layers]
    max_abs = np.array([layer.comparison.max_abs for layer in bisection.layers], dtype=float)
    mean_abs = np.array([layer.comparison.mean_abs for layer in bisection.layers], dtype=float)
    floor = 1e-12  # exact agreement plotted at the floor of the log axis
    fig = new_figure(figsize=(max(6.0, 0.35 * len(labels) + 2), 4.5))
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(labels))
    ax.semilogy(x, np.maximum(max_abs, floor), "o-", label="max |diff|")
    ax.semilogy(x, np.maximum(mean_abs, floor), "s--", label="mean |diff|")
    first = bisection.first_failure
    if first is not None:
        k = bisection.layers.index(first)
        ax.axvline(k, color="red", alpha=0.6, label=f"first failure: {first.probe.module}")
    ax.set_xticks(x, labels, rotation=75, ha="right", fontsize=7)
    ax.set_ylabel("|ONNX − PyTorch|")
    ax.set_title(f"{bisection.part}: error per layer (graph order)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_bev_diff(diff: np.ndarray, title: str, path: Path) -> Path:
    """Heatmap of ``diff [h, w]`` (rows = y, columns = x, origin at the lower left); PNG."""
    from centerpoint_deploy.figures import new_figure, save_figure

    fig = new_figure(figsize=(6, 5.2))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(diff, origin="lower", cmap="magma", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="max over channels |test − ref|")
    ax.set_xlabel("x cell")
    ax.set_ylabel("y cell")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def write_reports(report: VerificationReport, out_dir: Path | str) -> dict[str, Path]:
    """Write JSON, Markdown and plots into ``out_dir``; returns ``{kind: path}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {"json": out / "verification.json", "markdown": out / "verification.md"}
    write_text(written["json"], json.dumps(report.to_dict(), indent=2, allow_nan=False, default=_json_default))
    write_text(written["markdown"], markdown_summary(report))
    for result in report.backends.values():
        if result.worst_head_diff is not None:
            key = f"bev_diff_{_slug(result.name)}"
            written[key] = plot_bev_diff(result.worst_head_diff, f"{result.name}: |diff| of {result.worst_head_output}",
                                         out / f"{key}.png")
        for bisection in result.bisections:
            if bisection.layers:
                key = f"bisection_{_slug(result.name)}_{bisection.part}"
                written[key] = plot_layer_growth(bisection, out / f"{key}.png")
    return written


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"cannot serialise {type(value).__name__}")
