"""Export a CenterPoint model to the two ONNX files Autoware runs, and prove they match PyTorch.

``export_onnx`` writes into one deploy directory:

- ``pts_voxel_encoder.onnx`` and ``pts_backbone_neck_head.onnx`` (contract §2),
- ``<model>_ml_package.param.yaml`` (Autoware's model parameters),
- ``manifest.json`` (config, conventions, file digests), written last: a directory without a
  manifest is an export that did not finish or did not pass its checks.

Every export is checked: ``onnx.checker`` (full), strict shape inference, the I/O contract,
and ONNX Runtime against PyTorch on one sample at two voxel counts (and batch 2 for the head):
an output passes when ``max |ONNX - PyTorch| <= atol + rtol * max |PyTorch|``, the allowance
scaled to the output's magnitude (float32 summation-order noise grows with it: the genuine
j6gen2 head, outputs up to +-72, differs by 4.2e-4 = 6e-6 of its range; a 1.001 weight scaling
moves outputs by ~1e-3 of their range and fails).

``precision="fp16"`` / ``"int8"`` then turns the checked fp32 graphs into reduced-precision
ones from calibration frames (:mod:`centerpoint_deploy.export.precision`; int8 exports the
model with BatchNorm folded) and writes ``precision_plan.json`` beside them (fp32 exports have none).
"""

from __future__ import annotations

import copy
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from torch import Tensor, nn

from centerpoint_deploy import __version__, contract
from centerpoint_deploy.backends.onnxruntime import OnnxRuntimeBackend
from centerpoint_deploy.config.schema import TIME_LAG_COLUMN, ModelConfig
from centerpoint_deploy.errors import CenterPointError, ExportError
from centerpoint_deploy.export.autoware_params import autoware_model_params, check_node_grid, set_metadata
from centerpoint_deploy.export.bundle import check_bundle_options, node_precision, publish_bundle, staged_bundle
from centerpoint_deploy.graph_io import GraphPart, contract_problems, onnx_graph_io
from centerpoint_deploy.export.graphs import EncoderGraph, HeadGraph
from centerpoint_deploy.export.manifest import ONNX_FILES, Manifest, sha256_file
from centerpoint_deploy.export.precision import PRECISIONS
from centerpoint_deploy.export.precision.calibration import CalibrationSet
from centerpoint_deploy.export.precision.convert import Int8Options, reduce_precision
from centerpoint_deploy.export.precision.plan import PrecisionPlan, write_plan
from centerpoint_deploy.postprocess.node_params import NodePostprocessParams
from centerpoint_deploy.export.trt_ops import SUPPORTED_OPSETS, OpProblem, tensorrt_op_problems
from centerpoint_deploy.numerics import reproducible
from centerpoint_deploy.preprocess import prepare_encoder_input, scatter_to_bev
from centerpoint_deploy.progress import Progress

#: Default ``rtol`` of the export's self-check: a share of the output's largest magnitude.
SELF_CHECK_RTOL = 2e-5


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_onnx` wrote and measured.

    Attributes:
        manifest: the deploy directory's manifest (``manifest.deploy_dir`` is the directory).
        max_abs_diff: output name (suffixed ``@V`` with the voxel count for the encoder,
            ``@B2`` for the head) -> max |ONNX Runtime − PyTorch|.
        tensorrt_problems: graph part -> operators TensorRT's ONNX parser would refuse.
        plan: the precision of the written graphs (fp16/int8: which layers, from which frames).
    """

    manifest: Manifest
    max_abs_diff: dict[str, float]
    tensorrt_problems: dict[str, list[OpProblem]]
    plan: PrecisionPlan

    @property
    def encoder_path(self) -> Path:
        return self.manifest.deploy_dir / contract.ENCODER_FILE

    @property
    def head_path(self) -> Path:
        return self.manifest.deploy_dir / contract.HEAD_FILE


#: Units of the export's progress: encoder traced, head traced, graphs saved, ONNX Runtime check, precision.
_EXPORT_STEPS = 5


def export_onnx(model: nn.Module, config: ModelConfig, out_dir: Path | str, *, opset: int = 17,
                rot_y_axis_reference: bool = False, simplify: bool = False,
                check_sample: Tensor | None = None, atol: float = 1e-4, rtol: float = SELF_CHECK_RTOL,
                checkpoint: Path | str | None = None, precision: str = "fp32",
                calibration: CalibrationSet | None = None, int8: Int8Options = Int8Options(),
                progress: Progress | None = None, autoware_format: str = "v4.1", trt_precision: str | None = None,
                postprocess: NodePostprocessParams | None = None) -> ExportResult:
    """Export ``model`` into the deploy directory ``out_dir`` and check it against PyTorch.

    Args:
        model: a ``CenterPoint`` built from ``config`` (``encode``, ``forward_dense``).
        config: the model's config; its facts go into the manifest and the Autoware params.
        out_dir: deploy directory, created if needed; existing export files are replaced.
        opset: ONNX opset, 13-17 (AWML used 13, 16 and 17).
        rot_y_axis_reference: emit the head maps in Autoware's convention (contract §2).
        simplify: run onnxsim on both graphs (needs ``pip install onnxsim``).
        check_sample: points ``Tensor[N, len(use_dim)]`` float32 of one cloud for the
            PyTorch comparison; ``None`` draws a seeded random cloud over the whole range.
            The second voxel count comes from the first quarter of these points.
        atol, rtol: an output passes the PyTorch check when
            ``max |ONNX Runtime − PyTorch| <= atol + rtol * max |PyTorch|``.
        checkpoint: the checkpoint file the weights came from (its sha256 goes into the
            manifest); ``None`` records random weights.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"`` (needs ``calibration``).
        calibration: inputs of both graphs on calibration frames
            (:func:`~centerpoint_deploy.export.precision.calibration.collect_calibration`).
        int8: how the INT8 graphs are calibrated and which layers stay float.
        progress: called ``progress("export", done, 5)`` after tracing the encoder, tracing
            the head, checking and saving both graphs, comparing them with PyTorch, and
            writing the reduced-precision graphs (``precision`` fp16/int8; else a no-op).

    Raises:
        ExportError: bad arguments, an export/check failure, or a difference above the allowance.
    """
    if opset not in SUPPORTED_OPSETS:
        raise ExportError(f"opset {opset} is not supported; use {SUPPORTED_OPSETS.start}-{SUPPORTED_OPSETS.stop - 1}")
    if not atol > 0:
        raise ExportError(f"atol = {atol} must be > 0")
    if not rtol >= 0:
        raise ExportError(f"rtol = {rtol} must be >= 0")
    if precision not in PRECISIONS:
        raise ExportError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    if precision != "fp32" and (calibration is None or not len(calibration)):
        raise ExportError(f"a {precision} export needs calibration frames (a dataset)")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise ExportError(f"checkpoint {checkpoint} does not exist")
    node_trt_precision = node_precision(trt_precision if trt_precision is not None else precision)
    check_bundle_options(autoware_format, node_trt_precision)
    check_node_grid(config)
    out_dir = Path(out_dir)
    if precision == "int8":
        # Q/DQ weight scales must be those of the weights that run: BatchNorm folded first.
        from centerpoint_deploy.backends.pytorch import fold_batchnorm

        model = fold_batchnorm(copy.deepcopy(model).eval())
    device = next(model.parameters()).device
    sample = check_sample if check_sample is not None else random_points(config)
    features, coords = _sample_voxels(sample.to(device), config)

    was_training = model.training
    model.eval()
    with staged_bundle(out_dir) as stage:
        try:
            with torch.no_grad():
                encoder_features = features[coords[:, 0] == 0]
                encoder_graph, head_graph = EncoderGraph(model).eval(), HeadGraph(model, rot_y_axis_reference).eval()
                bev = scatter_to_bev(encoder_graph(features), coords, 2, config.bev_shape)  # [2, C, H, W]
                report = progress or (lambda *_: None)
                report("export", 0, _EXPORT_STEPS)
                graphs = {"encoder": _to_onnx(encoder_graph, encoder_features, "encoder", config, opset)}
                report("export", 1, _EXPORT_STEPS)
                graphs["head"] = _to_onnx(head_graph, bev[:1], "head", config, opset)
                report("export", 2, _EXPORT_STEPS)
                facts = {**autoware_model_params(config), "rot_y_axis_reference": rot_y_axis_reference,
                         "tool": f"centerpoint_deploy {__version__}"}
                for part, graph in graphs.items():
                    if simplify:
                        graph = _simplified(graph, part)
                    set_metadata(graph, {**facts, "graph": part})
                    _check_graph(graph, part)
                    onnx.save(graph, str(stage / ONNX_FILES[part]))
                    graphs[part] = graph
                report("export", 3, _EXPORT_STEPS)
                diffs = _compare_with_pytorch(encoder_graph, head_graph, stage, features, coords, bev, atol, rtol)
                report("export", 4, _EXPORT_STEPS)
        finally:
            model.train(was_training)

        plan = reduce_precision(stage, precision, calibration, int8, rot_y_axis_reference=rot_y_axis_reference)
        report("export", 5, _EXPORT_STEPS)
        extra = [write_plan(plan, stage).name] if precision != "fp32" else []
        manifest = publish_bundle(stage, out_dir, config, autoware_format=autoware_format, precision=precision,
                                  trt_precision=node_trt_precision, opset=opset,
                                  rot_y_axis_reference=rot_y_axis_reference, simplified=simplify,
                                  checkpoint_sha256=sha256_file(Path(checkpoint)) if checkpoint is not None else None,
                                  params=postprocess, extra_files=extra)
    return ExportResult(manifest, diffs, {part: tensorrt_op_problems(g) for part, g in graphs.items()}, plan)


def random_points(config: ModelConfig, seed: int = 0) -> Tensor:
    """A seeded cloud ``Tensor[N, len(use_dim)]`` spread uniformly over the point-cloud range.

    ``N`` is four times the voxel count used for checking, ``min(max_voxels, H * W / 8)``
    (about an eighth of the BEV cells occupied, typical of a LiDAR sweep); intensity is
    uniform in [0, 255) and the time lag is 0 or 0.1 s.
    """
    generator = torch.Generator().manual_seed(seed)
    height, width = config.bev_shape
    num_points = 4 * max(1, min(config.voxelization.max_voxels, height * width // 8))
    low = torch.tensor(config.voxelization.point_cloud_range[:3])
    high = torch.tensor(config.voxelization.point_cloud_range[3:])
    columns = [low + (high - low) * torch.rand(num_points, 3, generator=generator) * 0.999]
    for dim in config.points.use_dim[3:]:
        if dim == TIME_LAG_COLUMN:
            columns.append(0.1 * torch.randint(0, 2, (num_points, 1), generator=generator).float())
        else:
            columns.append(255.0 * torch.rand(num_points, 1, generator=generator))
    return torch.cat(columns, dim=1)


def _sample_voxels(points: Tensor, config: ModelConfig) -> tuple[Tensor, Tensor]:
    """Voxelize ``points`` (batch item 0) and their first quarter (item 1).

    Returns ``features [V, P, F]`` and ``coords [V, 4]`` of both items, item 0 first.
    """
    if points.dim() != 2 or points.shape[0] < 4:
        raise ExportError(f"check_sample must be a [N >= 4, {len(config.points.use_dim)}] point tensor, "
                          f"got shape {list(points.shape)}")
    try:
        voxels, features = prepare_encoder_input([points, points[: points.shape[0] // 4]], config)
    except CenterPointError as exc:
        raise ExportError(f"check_sample cannot be voxelized: {exc}") from exc
    counts = torch.bincount(voxels.coords[:, 0].long(), minlength=2)
    if int(counts.min()) == 0 or int(counts[0]) == int(counts[1]):
        raise ExportError(f"check_sample gives voxel counts {counts.tolist()}; need two different "
                          "non-zero counts (points inside the point-cloud range, in several pillars)")
    return features, voxels.coords


def _dynamic_axes(part: GraphPart, config: ModelConfig) -> dict[str, dict[int, str]]:
    if part == "encoder":
        return {contract.ENCODER_INPUT: {0: "num_voxels", 1: "num_max_points"},
                contract.ENCODER_OUTPUT: {0: "num_voxels"}}
    # Head maps are H/W when the head does not downsample; otherwise they get their own names.
    same = config.decode.out_size_factor == 1
    out_axes = {0: "batch_size", 2: "H" if same else "H_out", 3: "W" if same else "W_out"}
    axes = {contract.HEAD_INPUT: {0: "batch_size", 2: "H", 3: "W"}}
    axes.update({name: out_axes for name in contract.head_output_names(len(config.head.tasks))})
    return axes


def _to_onnx(module: nn.Module, example: Tensor, part: GraphPart, config: ModelConfig,
             opset: int) -> onnx.ModelProto:
    """Trace ``module`` on ``example`` with the legacy (TorchScript) exporter."""
    if part == "encoder":
        names = ([contract.ENCODER_INPUT], [contract.ENCODER_OUTPUT])
    else:
        names = ([contract.HEAD_INPUT], list(contract.head_output_names(len(config.head.tasks))))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter announces its own deprecation and tracer notes on every call.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, (example,), buffer, dynamo=False, opset_version=opset,
                              input_names=names[0], output_names=names[1],
                              dynamic_axes=_dynamic_axes(part, config), do_constant_folding=True)
        except Exception as exc:  # the exporter raises many internal error types
            raise ExportError(f"torch.onnx.export of the {part} failed: {exc}") from exc
    return onnx.load_from_string(buffer.getvalue())


def _simplified(graph: onnx.ModelProto, part: GraphPart) -> onnx.ModelProto:
    """onnxsim on ``graph``, keeping the exported inputs/outputs (names and dynamic axes)."""
    try:
        import onnxsim
    except ImportError as exc:
        raise ExportError("simplify=True needs onnxsim: pip install onnxsim") from exc
    try:
        simplified, ok = onnxsim.simplify(graph)
    except Exception as exc:  # onnxsim raises RuntimeError / ValueError from its C++ core
        raise ExportError(f"onnxsim failed on the {part}: {exc}") from exc
    if not ok:
        raise ExportError(f"onnxsim's own check failed on the simplified {part}")
    for original, new in ((graph.graph.input, simplified.graph.input), (graph.graph.output, simplified.graph.output)):
        by_name = {v.name: v for v in original}
        for value in new:
            if value.name in by_name:
                value.CopyFrom(by_name[value.name])
    return simplified


def _check_graph(graph: onnx.ModelProto, part: GraphPart) -> None:
    """onnx.checker (full), strict shape inference and the I/O contract."""
    try:
        onnx.checker.check_model(graph, full_check=True)
        onnx.shape_inference.infer_shapes(graph, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"the exported {part} graph is not valid ONNX: {exc}") from exc
    problems = contract_problems(part, *onnx_graph_io(graph))
    if problems:
        raise ExportError(f"the exported {part} graph breaks the contract: " + "; ".join(problems))


def _compare_with_pytorch(encoder_graph: EncoderGraph, head_graph: HeadGraph, out_dir: Path, features: Tensor,
                          coords: Tensor, bev: Tensor, atol: float, rtol: float) -> dict[str, float]:
    """ONNX Runtime (CPU) vs PyTorch (strict fp32: no TF32) on the saved files.

    Returns output -> max |diff|; raises ExportError where it exceeds ``atol + rtol * max |PyTorch|``.
    """
    diffs: dict[str, float] = {}
    allowed: dict[str, float] = {}
    with reproducible(), OnnxRuntimeBackend(out_dir / contract.ENCODER_FILE, "cpu", part="encoder") as encoder, \
            OnnxRuntimeBackend(out_dir / contract.HEAD_FILE, "cpu", part="head") as head:
        for item in (0, 1):
            item_features = features[coords[:, 0] == item]
            expected = encoder_graph(item_features).cpu()
            got = encoder.infer({contract.ENCODER_INPUT: item_features.cpu()})[contract.ENCODER_OUTPUT]
            key = f"{contract.ENCODER_OUTPUT}@{item_features.shape[0]}"
            diffs[key], allowed[key] = _max_abs_diff(got, expected), atol + rtol * _max_abs(expected)
        outputs = head.infer({contract.HEAD_INPUT: bev.cpu()})
        for name, expected in zip(head.output_names, head_graph(bev)):
            key = f"{name}@B2"
            diffs[key], allowed[key] = _max_abs_diff(outputs[name], expected.cpu()), atol + rtol * _max_abs(expected)
    worst = {name: d for name, d in diffs.items() if not d <= allowed[name]}
    if worst:
        shown = ", ".join(f"{name}={d:.3g} (allowed {allowed[name]:.3g})" for name, d in worst.items())
        raise ExportError(f"ONNX Runtime disagrees with PyTorch above atol={atol:g} + rtol={rtol:g} * max|output|: "
                          f"max |diff| {shown} (nothing written)")
    return diffs


def _max_abs(tensor: Tensor) -> float:
    return float(tensor.detach().abs().max()) if tensor.numel() else 0.0


def _max_abs_diff(got: Tensor, expected: Tensor) -> float:
    if got.shape != expected.shape:
        return float("inf")
    return float((got.float() - expected.float()).abs().max()) if got.numel() else 0.0
