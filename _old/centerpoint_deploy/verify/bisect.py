"""Find the first layer where a deployed ONNX graph departs from the PyTorch model.

The deployed file is copied with every probe tensor (see :mod:`.probes`) added as a graph
output, run once with ONNX Runtime, and the PyTorch model is run once on the same input
with forward hooks on the matching modules. Each probe is compared with
:func:`.compare.compare_tensors`; the report lists them in graph order (the per-layer error
growth) and names the first that fails. Because PyTorch and ONNX each run end to end, an
error introduced at layer k shows at k and in everything after it: the first failing probe
is where it starts.

Nothing outside the network modules is probed (the ``rot_y_axis_reference`` permutation,
the encoder's input features): when every layer passes but the graph outputs fail, the
report says so, which points at those glue operations.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import onnx
import torch
from torch import Tensor, nn

from centerpoint_deploy import contract
from centerpoint_deploy.backends.onnxruntime import ort_session
from centerpoint_deploy.errors import VerificationError
from centerpoint_deploy.postprocess.rot_reference import apply_rot_y_axis_reference
from centerpoint_deploy.verify.compare import TensorComparison, Tolerance, compare_tensors
from centerpoint_deploy.verify.probes import Probe, find_probes, with_extra_outputs

GraphPart = Literal["encoder", "head"]


@dataclass
class LayerComparison:
    """One probed layer: which module, which ONNX tensor, and how they compare."""

    probe: Probe
    comparison: TensorComparison

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.probe.label, "module": self.probe.module, "hook_module": self.probe.hook_module,
                "aliases": list(self.probe.aliases), "onnx_tensor": self.probe.tensor,
                **{k: v for k, v in self.comparison.to_dict().items() if k != "name"}}


@dataclass
class BisectionReport:
    """Per-layer comparison of one graph part, in graph order; truthy when no layer failed.

    Attributes:
        part: ``"encoder"`` or ``"head"``.
        onnx_path: the deployed file that was probed.
        layers: every probed layer in graph (topological) order.
        outputs: the graph's own outputs compared with the PyTorch graph module's outputs.
        notes: why some nodes could not be mapped to modules, and other caveats.
    """

    part: str
    onnx_path: str
    layers: list[LayerComparison]
    outputs: list[TensorComparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def first_failure(self) -> LayerComparison | None:
        return next((layer for layer in self.layers if not layer.comparison), None)

    def __bool__(self) -> bool:
        return self.first_failure is None

    @property
    def summary(self) -> str:
        """One sentence: where the divergence starts, or that the layers agree."""
        first = self.first_failure
        if first is not None:
            c = first.comparison
            return (f"{self.part}: first diverging layer is {first.probe.label} (ONNX tensor {first.probe.tensor}): "
                    f"max abs diff {c.max_abs:.3g}, cosine {c.cosine:.6f}; {c.reason}")
        failed_outputs = [o.name for o in self.outputs if not o]
        if failed_outputs:
            return (f"{self.part}: all {len(self.layers)} probed layers agree, yet outputs {failed_outputs} differ: "
                    "the difference comes from operations outside the network modules "
                    "(e.g. the rot_y_axis_reference transform of the head outputs)")
        return f"{self.part}: all {len(self.layers)} probed layers and the outputs agree"

    def to_dict(self) -> dict[str, Any]:
        first = self.first_failure
        return {"part": self.part, "onnx_path": self.onnx_path, "passed": bool(self), "summary": self.summary,
                "first_failure": None if first is None else first.probe.label,
                "layers": [layer.to_dict() for layer in self.layers],
                "outputs": [o.to_dict() for o in self.outputs], "notes": self.notes}


def unwrap_model(model_or_reference: Any) -> nn.Module:
    """The ``CenterPoint`` module of a model, a PyTorch backend, or a Detector using one."""
    candidate = model_or_reference
    for attribute in ("head", "model"):
        if not isinstance(candidate, nn.Module) and hasattr(candidate, attribute):
            candidate = getattr(candidate, attribute)
    if not isinstance(candidate, nn.Module) or not hasattr(candidate, "forward_dense"):
        raise VerificationError(
            f"bisection needs the PyTorch CenterPoint model (or a Detector/backend holding one), "
            f"got {type(model_or_reference).__name__}")
    return candidate


def run_onnx_probes(graph: onnx.ModelProto, feed: dict[str, Tensor], tensors: list[str],
                     device: torch.device) -> dict[str, Tensor]:
    """Run ``graph`` + ``tensors`` as extra outputs with ONNX Runtime; all outputs, on CPU."""
    probed = with_extra_outputs(graph, tensors)
    session = ort_session(probed.SerializeToString(), device)  # deterministic, strict fp32
    names = [o.name for o in probed.graph.output]
    arrays = {name: t.detach().cpu().contiguous().numpy() for name, t in feed.items()}
    return {name: torch.from_numpy(value) for name, value in zip(names, session.run(names, arrays))}


def _run_torch_probes(root: nn.Module, forward: Callable[[], Any], hook_modules: set[str]) -> dict[str, Tensor]:
    """Run ``forward`` with forward hooks on ``hook_modules`` of ``root``; their tensor outputs, on CPU."""
    captured: dict[str, Tensor] = {}
    handles = []

    def make_hook(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if isinstance(output, Tensor):
                captured[name] = output.detach().float().cpu()
        return hook

    modules = dict(root.named_modules())
    try:
        for name in hook_modules:
            handles.append(modules[name].register_forward_hook(make_hook(name)))
        with torch.no_grad():
            forward()
    finally:
        for handle in handles:
            handle.remove()
    return captured


def names_from_reexport(graph: onnx.ModelProto, reexport: Callable[[], onnx.ModelProto]) -> onnx.ModelProto:
    """A copy of ``graph`` whose nodes carry the names of a fresh export with the same node sequence.

    Only names change: initializers (the deployed weights) and topology stay ``graph``'s.

    Raises:
        VerificationError: the fresh export's node sequence (op types in order) differs.
    """
    fresh = reexport()
    ops, fresh_ops = [n.op_type for n in graph.graph.node], [n.op_type for n in fresh.graph.node]
    if ops != fresh_ops:
        raise VerificationError(
            f"the deployed graph has no module-scoped node names and its {len(ops)} nodes do not line up with a "
            f"fresh export's {len(fresh_ops)}; re-export with centerpoint-deploy export to bisect it")
    named = onnx.ModelProto()
    named.CopyFrom(graph)
    for node, source in zip(named.graph.node, fresh.graph.node):
        node.name = source.name
    return named


def bisect_graph(part: GraphPart, root: nn.Module, forward: Callable[[], dict[str, Tensor]],
                 onnx_path: Path | str, feed: dict[str, Tensor], tol: Tolerance,
                 device: torch.device | str = "cpu",
                 reexport: Callable[[], onnx.ModelProto] | None = None) -> BisectionReport:
    """Probe every module boundary of ``onnx_path`` and compare with ``root`` run by ``forward``.

    Args:
        part: which graph, for the report.
        root: module whose submodule names the graph's node scopes refer to.
        forward: runs ``root`` on the same input as ``feed``; returns ``{output name: tensor}``
            comparable with the graph's outputs (without graph-level transforms is fine: a
            mismatch there is reported as "outside the modules").
        onnx_path: the deployed graph.
        feed: the graph's input ``{name: tensor}``.
        tol: tolerance applied to every layer and output.
        device: where ONNX Runtime runs (``cpu`` or ``cuda``).
        reexport: returns a fresh export of ``root``'s graph; used only for its node names
            when the deployed file's names carry no module scopes.
    """
    path = Path(onnx_path)
    if not path.is_file():
        raise VerificationError(f"ONNX file {path} does not exist")
    graph = onnx.load(str(path))
    probes, notes = find_probes(graph, root)
    if not probes and reexport is not None:
        graph = names_from_reexport(graph, reexport)
        probes, notes = find_probes(graph, root)
        notes.append(f"{path.name} has no module-scoped node names; names were taken from a fresh export of the "
                     "PyTorch model with the same node sequence (the weights are still the deployed file's)")
    if not probes:
        raise VerificationError(
            f"no node of {path} could be mapped to a module of the PyTorch model (its node names carry no "
            "module scopes, e.g. after a tool renamed them); bisection needs the exporter's node names")
    captured: dict[str, Tensor] = {}
    reference_outputs = _run_torch_probes(root, lambda: captured.update(forward()), {p.hook_module for p in probes})
    reference_outputs = {**reference_outputs, **{f"output:{k}": v.detach().float().cpu() for k, v in captured.items()}}
    onnx_outputs = run_onnx_probes(graph, feed, [p.tensor for p in probes], torch.device(device))

    layers = []
    for probe in probes:
        ref = reference_outputs.get(probe.hook_module)
        got = onnx_outputs[probe.tensor]
        if ref is None or tuple(ref.shape) != tuple(got.shape):
            shown = "no tensor output" if ref is None else f"shape {list(ref.shape)}"
            notes.append(f"skipped {probe.label}: PyTorch gave {shown}, ONNX tensor {probe.tensor} has "
                         f"shape {list(got.shape)}")
            continue
        layers.append(LayerComparison(probe, compare_tensors(probe.label, ref, got, tol)))
    outputs = [compare_tensors(o.name, reference_outputs[f"output:{o.name}"], onnx_outputs[o.name], tol)
               for o in graph.graph.output if f"output:{o.name}" in reference_outputs]
    return BisectionReport(part, str(path), layers, outputs, notes)


def bisect_head(model_or_reference: Any, onnx_path: Path | str, spatial_features: Tensor, tol: Tolerance,
                device: torch.device | str = "cpu", rot_y_axis_reference: bool = False) -> BisectionReport:
    """Bisect ``pts_backbone_neck_head.onnx`` against the PyTorch backbone, neck and head.

    Args:
        model_or_reference: the ``CenterPoint`` model, or a Detector / PyTorch backend holding it.
        onnx_path: the deployed head graph (possibly not what PyTorch would export today).
        spatial_features: ``Tensor[B, C, H, W]`` BEV input, the same for both sides.
        tol: tolerance applied to every layer.
        device: ONNX Runtime device; PyTorch runs where the model's parameters are.
        rot_y_axis_reference: the graph's outputs use Autoware's dim/rot convention (the
            manifest says); only affects the comparison of the final outputs.
    """
    model = unwrap_model(model_or_reference)
    model_device = next(model.parameters()).device
    bev = spatial_features.to(model_device)

    def forward() -> dict[str, Tensor]:
        tasks = model.forward_dense(bev)
        if rot_y_axis_reference:
            tasks = [apply_rot_y_axis_reference(maps) for maps in tasks]
        names = contract.head_output_names(len(tasks))
        flat = [maps[name] for maps in tasks for name in contract.HEAD_OUTPUTS]
        return dict(zip(names, flat))

    return bisect_graph("head", model, forward, onnx_path, {contract.HEAD_INPUT: spatial_features.cpu()}, tol, device,
                        reexport=lambda: _fresh_export(model, onnx_path, "head", rot_y_axis_reference))


def bisect_encoder(model_or_reference: Any, onnx_path: Path | str, input_features: Tensor, tol: Tolerance,
                   device: torch.device | str = "cpu") -> BisectionReport:
    """Bisect ``pts_voxel_encoder.onnx`` against the PyTorch pillar encoder (``pts_voxel_encoder.pfn_layers.i``).

    Args:
        input_features: ``Tensor[V, P, F]`` decorated pillars, the same for both sides.
    """
    model = unwrap_model(model_or_reference)
    features = input_features.to(next(model.parameters()).device)
    return bisect_graph("encoder", model, lambda: {contract.ENCODER_OUTPUT: model.encode(features)}, onnx_path,
                        {contract.ENCODER_INPUT: input_features.cpu()}, tol, device,
                        reexport=lambda: _fresh_export(model, onnx_path, "encoder", False))


def _fresh_export(model: nn.Module, deployed: Path | str, part: GraphPart, rot_y_axis_reference: bool) -> onnx.ModelProto:
    """Export ``model`` again with the deployed file's opset (for node names only)."""
    from centerpoint_deploy.export.onnx_export import export_onnx  # export is only needed on this fallback path

    opset = next((o.version for o in onnx.load(str(deployed), load_external_data=False).opset_import
                  if o.domain in ("", "ai.onnx")), 17)
    with tempfile.TemporaryDirectory() as tmp:
        result = export_onnx(model, model.config, tmp, opset=opset, rot_y_axis_reference=rot_y_axis_reference)
        return onnx.load(str(result.encoder_path if part == "encoder" else result.head_path))
