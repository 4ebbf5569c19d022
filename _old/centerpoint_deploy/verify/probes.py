"""Map tensors inside an exported ONNX graph to the PyTorch modules that produced them.

The legacy (TorchScript) exporter of torch 2.x names every node after the module scopes it
ran in, e.g. ``/pts_backbone/blocks.1/blocks.1.3/Conv`` or
``/pts_bbox_head/task_heads.0/heatmap/heatmap.0/heatmap.0.0/Conv``. Each ``/``-separated
component is the module's dotted path relative to the nearest enclosing module that is
not a plain container, so the components are dotted suffixes of growing prefixes of the
module's full name (``pts_backbone`` → ``...blocks.1`` → ``...blocks.1.3``). Leading
components that match nothing (an export wrapper such as ``HeadGraph.model``) are skipped;
nodes outside every module (``/Sigmoid``, the ``rot_y_axis_reference`` permutation) map to
none.

A *probe* is a module whose nodes hand exactly one tensor to the rest of the graph; that
tensor is the module's output and is compared with the module's forward-hook output. Two
exporter habits are handled:

- eval-mode BatchNorm after a Conv is folded into the Conv's weights, so the BN module has
  no node; the Conv's output then equals the BN's output, and the hook goes on the BN;
- several modules can hand out the same tensor (a ``Sequential`` and its last ReLU); the
  deepest one names the probe and the others are listed as aliases.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx
from torch import nn

#: Module types whose eval-mode forward the exporter folds into a preceding Conv / Linear.
_FOLDABLE_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_FOLDING_LAYERS = (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


@dataclass(frozen=True)
class Probe:
    """One comparable activation.

    Attributes:
        module: dotted name of the module the ONNX tensor belongs to (e.g. ``pts_backbone.blocks.1.3``).
        hook_module: dotted name of the module whose forward output equals the tensor (the
            folded BatchNorm after ``module`` where there is one, else ``module``).
        tensor: name of the ONNX tensor.
        order: index of the producing node in the graph (graph order is topological).
        aliases: other modules whose output is the same tensor.
    """

    module: str
    hook_module: str
    tensor: str
    order: int
    aliases: tuple[str, ...] = field(default=())

    @property
    def label(self) -> str:
        """``module``, with ``+BN`` appended when a folded BatchNorm is part of the probed tensor."""
        return self.module if self.hook_module == self.module else f"{self.module} +BN"


def node_scopes(node_name: str) -> list[str] | None:
    """Scope components of a legacy-exporter node name; ``None`` when the name has no scopes.

    ``"/pts_backbone/blocks.0/blocks.0.0/Conv"`` → ``["pts_backbone", "blocks.0", "blocks.0.0"]``;
    ``"/Sigmoid"`` → ``[]``; ``"Identity_0"`` (no leading ``/``) → ``None``.
    """
    if not node_name.startswith("/"):
        return None
    return [part for part in node_name.split("/")[1:-1] if part]


def _is_suffix(short: list[str], long: list[str]) -> bool:
    return len(short) <= len(long) and long[len(long) - len(short):] == short


def module_for_scopes(scopes: list[str], module_names: list[str]) -> str | None:
    """The module (dotted name from ``module_names``) a node with ``scopes`` ran in.

    Walks the components from the innermost: the last must be a dotted suffix of the module's
    name, each earlier one a dotted suffix of a strictly shorter prefix of it. The candidate
    that matches the most components wins; ``None`` when nothing or more than one fits best.
    """
    if not scopes:
        return None
    innermost = scopes[-1].split(".")
    best: list[str] = []
    best_score = 0
    for name in module_names:
        tokens = name.split(".") if name else []
        if not _is_suffix(innermost, tokens):
            continue
        score, end = 1, len(tokens)
        for component in reversed(scopes[:-1]):
            parts = component.split(".")
            found = next((k for k in range(end - 1, 0, -1) if _is_suffix(parts, tokens[:k])), None)
            if found is None:
                break  # leading components of an export wrapper
            score, end = score + 1, found
        if score > best_score:
            best, best_score = [name], score
        elif score == best_score:
            best.append(name)
    return best[0] if len(best) == 1 else None


def _folded_norm_after(name: str, modules: dict[str, nn.Module], has_nodes: set[str]) -> str | None:
    """The BatchNorm registered right after ``name`` in the same parent if it left no ONNX node.

    Registration order is the forward order in ``nn.Sequential`` and in conv-BN-ReLU blocks
    (``conv``, ``bn``, ``activate``).
    """
    if not isinstance(modules[name], _FOLDING_LAYERS):
        return None
    parent_name, _, child = name.rpartition(".")
    siblings = [n for n, _ in modules[parent_name].named_children()]
    position = siblings.index(child)
    if position + 1 == len(siblings):
        return None
    sibling = f"{parent_name}.{siblings[position + 1]}" if parent_name else siblings[position + 1]
    if isinstance(modules[sibling], _FOLDABLE_NORMS) and sibling not in has_nodes:
        return sibling
    return None


def find_probes(graph: onnx.ModelProto, root: nn.Module) -> tuple[list[Probe], list[str]]:
    """Probes of ``graph`` exported from ``root`` (or a wrapper around it), in graph order.

    Args:
        graph: the exported graph (deployed file; node names from the legacy exporter).
        root: the module whose submodule names the scopes refer to (``CenterPoint`` for the
            head graph, its ``pts_voxel_encoder`` for the encoder graph).

    Returns:
        ``(probes, notes)``; ``notes`` says why nodes could not be mapped (e.g. the graph was
        renamed by a tool), empty when every scoped node was mapped.
    """
    modules = dict(root.named_modules())
    names = [n for n in modules if n]
    nodes = list(graph.graph.node)
    owner: list[str | None] = []
    unscoped = 0
    cache: dict[tuple[str, ...], str | None] = {}
    for node in nodes:
        scopes = node_scopes(node.name)
        if scopes is None:
            unscoped += node.op_type not in ("Constant", "Identity", "QuantizeLinear", "DequantizeLinear")
            owner.append(None)
            continue
        key = tuple(scopes)
        if key not in cache:
            cache[key] = module_for_scopes(scopes, names)
        owner.append(cache[key])
    notes = []
    if unscoped:
        notes.append(f"{unscoped} node(s) have names without module scopes (renamed after export?)")

    has_nodes = {o for o in owner if o is not None}
    producer = {out: i for i, node in enumerate(nodes) for out in node.output}
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        for name in node.input:
            consumers.setdefault(name, []).append(i)
    graph_outputs = {o.name for o in graph.graph.output}

    def inside(index: int, module: str) -> bool:
        o = owner[index]
        return o is not None and (o == module or o.startswith(module + "."))

    by_tensor: dict[str, list[str]] = {}
    for module in sorted({m for o in has_nodes for m in _ancestors(o)}):
        leaving = {out for i, node in enumerate(nodes) if inside(i, module) for out in node.output
                   if out in graph_outputs or any(not inside(c, module) for c in consumers.get(out, []))}
        if len(leaving) == 1:
            by_tensor.setdefault(leaving.pop(), []).append(module)

    probes = []
    for tensor, owners in by_tensor.items():
        deepest = max(owners, key=lambda m: (m.count("."), len(m)))
        hook = _folded_norm_after(deepest, modules, has_nodes) or deepest
        probes.append(Probe(deepest, hook, tensor, producer[tensor],
                            tuple(sorted(o for o in owners if o != deepest))))
    probes.sort(key=lambda p: p.order)
    return probes, notes


def _ancestors(name: str) -> list[str]:
    """``"a.b.c"`` → ``["a", "a.b", "a.b.c"]``."""
    parts = name.split(".")
    return [".".join(parts[: k + 1]) for k in range(len(parts))]


def with_extra_outputs(graph: onnx.ModelProto, tensors: list[str]) -> onnx.ModelProto:
    """A copy of ``graph`` that also outputs ``tensors`` (element type from shape inference, else float32)."""
    probed = onnx.ModelProto()
    probed.CopyFrom(graph)
    known = {o.name for o in probed.graph.output}
    try:
        inferred = onnx.shape_inference.infer_shapes(graph)
        elem_types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    except Exception:  # shape inference is only used for dtypes; float32 is the fallback
        elem_types = {}
    for name in tensors:
        if name not in known:
            elem = elem_types.get(name) or onnx.TensorProto.FLOAT
            probed.graph.output.append(onnx.helper.make_tensor_value_info(name, elem, None))
    return probed
