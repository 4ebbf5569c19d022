"""The report document: Markdown with relative links, HTML with embedded images and escaped text."""

from __future__ import annotations

import base64
from pathlib import Path

from centerpoint_deploy.job.document import Bullets, Code, Figure, Heading, Links, Paragraph, Table, to_html, to_markdown


def _blocks(tmp_path: Path) -> list:
    image = tmp_path / "plots" / "a.png"
    image.parent.mkdir()
    image.write_bytes(b"\x89PNG fake bytes")
    return [Heading("Report", 1), Paragraph("model `demo` <b>"), Table(["name", "a|b"], [["x", "1.0000"]]),
            Bullets(["one", "PASS"]), Figure(image, "curves"), Links([("log", tmp_path / "deploy.log")]),
            Code("k: v\n")]


def test_markdown(tmp_path: Path) -> None:
    assert to_markdown(_blocks(tmp_path), tmp_path) == "\n".join([
        "# Report", "",
        "model `demo` <b>", "",
        "| name | a\\|b |", "|---|---|", "| x | 1.0000 |", "",
        "- one", "- PASS", "",
        "![curves](plots/a.png)", "", "*curves*", "",
        "- [log](deploy.log)", "",
        "```", "k: v", "```", "",
    ])


def test_html_is_self_contained_and_escaped(tmp_path: Path) -> None:
    page = to_html(_blocks(tmp_path), "T <1>", tmp_path)
    encoded = base64.b64encode(b"\x89PNG fake bytes").decode("ascii")
    assert f'<img src="data:image/png;base64,{encoded}" alt="curves">' in page
    assert "plots/a.png" not in page
    assert "<title>T &lt;1&gt;</title>" in page
    assert "<p>model <code>demo</code> &lt;b&gt;</p>" in page
    # text columns left-aligned, numeric ones right-aligned (class "num")
    assert '<th>name</th><th class="num">a|b</th>' in page and '<td>x</td><td class="num">1.0000</td>' in page
    assert '<li><span class="PASS">PASS</span></li>' in page
    assert '<a href="deploy.log">log</a>' in page
    assert "<pre>k: v\n</pre>" in page
