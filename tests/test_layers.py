"""The package's structure, read from the source (``ast``, nothing imported or run).

The layer order is written once, in ``docs/architecture.md`` (the block fenced ```` ```layers ````):
each line is a layer, lowest first, naming the top-level modules and subpackages in it. A module
may import its own unit (module or subpackage) and units of lower layers only, and the module
graph has no cycle. Imports inside functions count like any other.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "centerpoint_deploy"

#: Cycles that another helper removes (issue 14 item 5: the CLI assembled without import cycles).
#: A cycle may shrink or vanish; none other may appear.
PENDING_CYCLES: list[frozenset[str]] = []


def layers() -> dict[str, int]:
    """``{unit: layer}`` from the ``layers`` block of docs/architecture.md."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"^```layers\n(.*?)^```", text, re.S | re.M)
    assert block, "docs/architecture.md lacks its ```layers block"
    order: dict[str, int] = {}
    for number, line in enumerate(line for line in block.group(1).splitlines() if line.strip()):
        for unit in line.split(":", 1)[1].split():
            assert unit not in order, f"{unit} is in two layers"
            order[unit] = number
    return order


def modules() -> dict[str, Path]:
    """``{"backends.pytorch": path, "__init__": path, ...}`` of every module of the package."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The package modules ``path`` imports (``from centerpoint_deploy.x import y`` -> ``x.y`` or ``x``)."""

    def resolve(name: str) -> str:
        name = name.removeprefix("centerpoint_deploy").lstrip(".")
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or "__init__"

    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("centerpoint_deploy"):
            targets |= {resolve(f"{node.module}.{alias.name}") for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level:
            pytest.fail(f"{path}: relative import; write the absolute module")
        elif isinstance(node, ast.Import):
            targets |= {resolve(alias.name) for alias in node.names if alias.name.startswith("centerpoint_deploy")}
    return targets


def unit(module: str) -> str:
    return module.split(".")[0]


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known) - {name} for name, path in known.items()}


def test_every_unit_has_a_layer() -> None:
    order = layers()
    units = {unit(name) for name in modules()}
    assert sorted(units - set(order)) == [], "place these in docs/architecture.md's layers block"
    assert sorted(set(order) - units) == [], "the layers block names units that do not exist"


def test_imports_only_point_down() -> None:
    order = layers()
    upward = [f"{module} imports {target} (layer {order[unit(target)]} >= {order[unit(module)]})"
              for module, targets in graph().items() for target in targets
              if unit(target) != unit(module) and order[unit(target)] >= order[unit(module)]]
    assert upward == []


def cycles(edges: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def test_no_import_cycle() -> None:
    unexpected = [sorted(c) for c in cycles(graph()) if not any(c <= pending for pending in PENDING_CYCLES)]
    assert unexpected == []


def test_the_scan_sees_cycles_and_upward_imports() -> None:
    """The checks themselves: a two-module cycle is found, an acyclic chain is not."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset({"a", "b", "c"})]
    assert cycles({"a": {"b"}, "b": set()}) == []
    order = layers()
    assert order["errors"] < order["backends"] < order["export"] < order["variant"] < order["cli"]
    assert order["graph_io"] < order["backends"] and order["device"] < order["preprocess"]


def test_detector_is_small_and_has_one_job() -> None:
    source = (PACKAGE / "detector.py").read_text()
    assert len(source.splitlines()) < 150
    tree = ast.parse(source)
    classes = [node.name for node in tree.body if isinstance(node, ast.ClassDef)]
    assert classes == ["Detector"]


def test_one_cuda_graph_capture_site() -> None:
    sites = defaultdict(int)
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("CUDAGraph", "graph") and \
                    isinstance(node.value, ast.Attribute) and node.value.attr == "cuda":
                sites[name] += 1
    assert set(sites) == {"cuda_graphs"}, dict(sites)


def test_matplotlib_through_its_object_api_only() -> None:
    for name, path in modules().items():
        text = path.read_text()
        assert "matplotlib.use(" not in text and "pyplot" not in text, name
