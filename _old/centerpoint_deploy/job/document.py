"""A small report document: a list of blocks rendered as Markdown and as self-contained HTML.

Markdown links images and files by paths relative to the report's folder; HTML embeds images
as base64 ``data:`` URIs (the file opens anywhere) and links other files relatively. Text
may hold ``code`` spans in backticks, shown as code in both.
"""

from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: Sequence[str]


@dataclass(frozen=True)
class Table:
    """``rows`` of strings, each as long as ``header``."""

    header: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclass(frozen=True)
class Figure:
    """A PNG image and its caption."""

    path: Path
    caption: str


@dataclass(frozen=True)
class Links:
    """Links to files: ``(label, path)`` pairs."""

    items: Sequence[tuple[str, Path]]


@dataclass(frozen=True)
class Code:
    """Preformatted text (e.g. YAML)."""

    text: str


Block = Heading | Paragraph | Bullets | Table | Figure | Links | Code

_CODE_SPAN = re.compile(r"`([^`]+)`")
#: A table cell that is a number (optionally signed, with exponent or a percent sign), or a placeholder.
_NUMBER = re.compile(r"^[-+\u2212]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?%?$")
_PLACEHOLDERS = ("", "-", "n/a")
_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th.num, td.num { text-align: right; }
th { background: #f0f0f0; }
code, pre { background: #f6f6f6; font-size: 0.9em; }
pre { padding: 0.8em; overflow-x: auto; }
figure { display: inline-block; margin: 0.5em 1em 1em 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #555; }
.PASS { color: #186a1e; font-weight: bold; } .FAIL { color: #b00020; font-weight: bold; }
"""


def _relative(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: Sequence[Block], base: Path) -> str:
    """Markdown; image and link paths relative to the folder ``base`` the file is written to."""
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, Bullets):
            lines += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Table):
            lines.append("| " + " | ".join(_md_cell(h) for h in block.header) + " |")
            lines.append("|" + "---|" * len(block.header))
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            lines.append("")
        elif isinstance(block, Figure):
            lines += [f"![{block.caption}]({_relative(block.path, base)})", "", f"*{block.caption}*", ""]
        elif isinstance(block, Links):
            lines += [f"- [{label}]({_relative(path, base)})" for label, path in block.items] + [""]
        elif isinstance(block, Code):
            lines += ["```", block.text.rstrip("\n"), "```", ""]
    return "\n".join(lines)


def _inline(text: str) -> str:
    """Escaped HTML of ``text`` with `code` spans and PASS/FAIL verdicts marked."""
    escaped = _CODE_SPAN.sub(r"<code>\1</code>", html.escape(text))
    return re.sub(r"\b(PASS|FAIL)\b", r'<span class="\1">\1</span>', escaped)


def _numeric_columns(table: Table) -> list[bool]:
    """Per column: whether every cell is a number or a placeholder (and one is a number); such
    columns are right-aligned, text columns (names, steps, notes) left-aligned."""
    columns = list(zip(*table.rows)) if table.rows else [() for _ in table.header]
    return [any(_NUMBER.match(c) for c in column) and all(_NUMBER.match(c) or c in _PLACEHOLDERS for c in column)
            for column in columns]


def _image_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def to_html(blocks: Sequence[Block], title: str, base: Path) -> str:
    """One self-contained HTML page: images embedded, file links relative to ``base``."""
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            body.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            align = [' class="num"' if numeric else "" for numeric in _numeric_columns(block)]
            head = "".join(f"<th{a}>{_inline(h)}</th>" for a, h in zip(align, block.header))
            rows = "".join("<tr>" + "".join(f"<td{a}>{_inline(c)}</td>" for a, c in zip(align, row)) + "</tr>"
                           for row in block.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(block, Figure):
            body.append(f'<figure><img src="{_image_uri(block.path)}" alt="{html.escape(block.caption)}">'
                        f"<figcaption>{_inline(block.caption)}</figcaption></figure>")
        elif isinstance(block, Links):
            body.append("<ul>" + "".join(f'<li><a href="{html.escape(_relative(path, base))}">{_inline(label)}</a></li>'
                                         for label, path in block.items) + "</ul>")
        elif isinstance(block, Code):
            body.append(f"<pre>{html.escape(block.text)}</pre>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")
