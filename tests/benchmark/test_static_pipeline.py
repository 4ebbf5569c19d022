"""The GPU-resident (fixed-shape) pipeline gives the reference results, on the CPU here.

The CUDA-marked tests run the same pipeline under ``torch.cuda.set_sync_debug_mode("error")``,
which turns any host synchronisation before the final copy into an error.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from centerpoint_deploy.config import load_config
from centerpoint_deploy.errors import BackendError, ConfigError, PointCloudError
from centerpoint_deploy.postprocess import circle_nms, circle_nms_fixed_rounds
from centerpoint_deploy.preprocess import decorate, scatter_to_bev, voxelize, voxelize_padded
from centerpoint_deploy.stages import NMS, STAGES
from centerpoint_deploy.static_pipeline import StaticPipeline, StaticSettings
from centerpoint_deploy.variant import VariantSpec, build_detector


@pytest.fixture(scope="module")
def config():
    # init_bias 0: random scores near 0.5, so many candidates reach NMS
    tiny = load_config("tiny")
    return replace(tiny, head=replace(tiny.head, init_bias=0.0))


def random_clouds(sizes: tuple[int, ...], seed: int = 1) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    scale, shift = torch.tensor([30.0, 30.0, 9.0, 255.0, 0.1]), torch.tensor([15.0, 15.0, 3.5, 0.0, 0.0])
    return [torch.rand(n, 5, generator=generator) * scale - shift for n in sizes]  # some points out of range


def make_detector(config, static: bool, kind: str = "pytorch", device: str = "cpu", **settings):
    """The dynamic detector of ``kind``, or the fixed-shape pipeline on its backends with ``settings``."""
    built = build_detector(VariantSpec.parse(kind, device=device), config)
    if not static:
        return built
    return StaticPipeline(config, built.encoder, built.head, rot_y_axis_reference=built.rot_y_axis_reference,
                          settings=StaticSettings(**settings))


def test_padded_voxelization_holds_the_reference_pillars_then_padding(config) -> None:
    clouds = random_clouds((900, 40))
    reference = voxelize(clouds, config.voxelization)
    padded, counts = voxelize_padded(clouds, config.voxelization)
    limit = config.voxelization.max_voxels
    assert padded.points.shape == (2 * limit, 32, 5)
    num = counts.num_voxels.tolist()
    rows = torch.cat([torch.arange(n) + b * limit for b, n in enumerate(num)])
    assert torch.equal(padded.points[rows], reference.points)
    assert torch.equal(padded.coords[rows], reference.coords)
    assert torch.equal(padded.num_points[rows], reference.num_points)
    pad = torch.ones(2 * limit, dtype=torch.bool)
    pad[rows] = False
    assert (padded.coords[pad] == -1).all() and (padded.num_points[pad] == 0).all()
    assert (padded.points[pad] == 0).all()
    assert counts.table[:, 0].tolist() == counts.table[:, 1].tolist() == num  # no overflow
    assert counts.num_dropped_points.tolist() == [0, 0]


@pytest.mark.slow
def test_compiled_padded_voxelization_is_the_eager_one(config) -> None:
    """``StaticSettings.compile`` runs voxelization through inductor: the same integers and points,
    bit for bit (pillar rows below the cloud's pillars included)."""
    clouds = random_clouds((900, 40))
    compiled = torch.compile(voxelize_padded, dynamic=False, fullgraph=True)
    (got, got_counts), (expected, counts) = compiled(clouds, config.voxelization, 64), \
        voxelize_padded(clouds, config.voxelization, 64)
    for a, b in ((got.points, expected.points), (got.num_points, expected.num_points),
                 (got.coords, expected.coords), (got_counts.table, counts.table)):
        assert a.dtype == b.dtype and torch.equal(a, b)
    assert counts.num_voxels.max() > 64 > counts.num_voxels.min()  # rows capped and rows of padding


def test_padding_rows_decorate_to_zero_and_scatter_nowhere(config) -> None:
    clouds = random_clouds((300,))
    reference = voxelize(clouds, config.voxelization)
    padded, _ = voxelize_padded(clouds, config.voxelization)
    features = decorate(padded, config)
    assert torch.isfinite(features).all()
    assert (features[reference.num_voxels:] == 0).all()
    pillars = torch.randn(padded.num_voxels, 32)
    pillars[reference.num_voxels:] = 1e6  # padding must not reach the canvas
    bev = scatter_to_bev(pillars, padded.coords, 1, config.bev_shape)
    expected = scatter_to_bev(pillars[: reference.num_voxels], reference.coords, 1, config.bev_shape)
    assert torch.equal(bev, expected)


def test_padded_counts_report_an_overflow(config) -> None:
    small = replace(config.voxelization, max_voxels=5)
    cloud = torch.tensor([[x * 0.4 + 0.1, 0.1, 0.0, 0.0, 0.0] for x in range(8)] + [[0.15, 0.1, 0.0, 0.0, 0.0]])
    padded, counts = voxelize_padded([cloud], small)
    # 8 pillars, the first 5 kept; the extra point lies in pillar 0; 3 points dropped
    assert counts.table.tolist() == [[5, 8, 3]]
    assert padded.num_points.tolist() == [2, 1, 1, 1, 1]


def test_fixed_round_nms_reports_convergence_and_matches_the_exact_loop() -> None:
    # a chain: 0 suppresses 1, so 2 survives; its final state needs two rounds after the start
    centers = torch.tensor([[[0.0, 0.0], [0.8, 0.0], [1.6, 0.0], [2.4, 0.0]]])
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6]])
    valid = torch.ones(1, 4, dtype=torch.bool)
    exact = circle_nms(centers, scores, valid, 1.0, 10)
    assert exact.tolist() == [[True, False, True, False]]
    keep, converged = circle_nms_fixed_rounds(centers, scores, valid, 1.0, 10, rounds=1)
    assert converged.tolist() == [False]  # round 1 suppresses 1, 2, 3; 2 comes back in round 2
    keep, converged = circle_nms_fixed_rounds(centers, scores, valid, 1.0, 10, rounds=3)
    assert converged.tolist() == [True] and torch.equal(keep, exact)
    with pytest.raises(ConfigError, match="rounds = 0"):
        circle_nms_fixed_rounds(centers, scores, valid, 1.0, 10, rounds=0)


@pytest.mark.parametrize("nms_rounds", [1, 16])
def test_static_detector_gives_the_reference_boxes(config, nms_rounds: int) -> None:
    clouds = random_clouds((1500, 700))
    expected = make_detector(config, static=False)(clouds)
    got = make_detector(config, static=True, nms_rounds=nms_rounds)(clouds)  # 1 round: exact fallback
    assert [len(d) for d in got] == [len(d) for d in expected] and len(expected[0]) > 5
    for g, e in zip(got, expected):
        assert torch.equal(g.boxes, e.boxes) and torch.equal(g.scores, e.scores) and torch.equal(g.labels, e.labels)


def assert_deferred_checks_raise(detector: StaticPipeline) -> None:
    """A NaN point and a cloud without pillars raise after the GPU-resident run."""
    bad = random_clouds((50,))[0]
    bad[7, 1] = float("nan")
    with pytest.raises(PointCloudError, match="point cloud 0: 1 of 50 points hold NaN"):
        detector(bad)
    with pytest.raises(PointCloudError, match="no point inside point_cloud_range"):
        detector(torch.full((3, 5), 40.0))


def test_static_detector_checks_inputs_at_the_end(config) -> None:
    detector = make_detector(config, static=True)
    assert_deferred_checks_raise(detector)
    with pytest.raises(PointCloudError, match=r"expected \[N, 5\]"):
        detector(torch.zeros(3, 4))
    many = replace(config, voxelization=replace(config.voxelization, max_voxels=10))
    with pytest.warns(UserWarning, match="exceed max_voxels=10"):
        make_detector(many, static=True)(random_clouds((400,))[0])


@pytest.mark.parametrize("static", [False, True])
def test_stages_are_the_pipeline(config, static: bool) -> None:
    detector = make_detector(config, static=static)
    cloud = random_clouds((600,))[0]
    ended = []
    outputs = detector.run_stages(cloud, ended.append)
    assert ended == list(STAGES)
    assert torch.equal(outputs.detections[0].boxes, detector(cloud).boxes)
    assert outputs.num_voxels == make_detector(config, static=False).run_stages(cloud).num_voxels  # padding not counted
    with pytest.raises(ConfigError, match="nms_rounds = 0"):
        make_detector(config, static=True, nms_rounds=0)


def _poison_heatmap(detector) -> None:
    """Make the head backend's network return one NaN in ``heatmap`` (a broken engine or graph)."""
    head = detector.load().head
    network = head._run

    def broken(tensor):
        outputs = dict(network(tensor))
        outputs["heatmap"] = outputs["heatmap"].clone()
        outputs["heatmap"].view(-1)[5] = float("nan")
        return outputs

    head._run = broken


@pytest.mark.parametrize("static", [False, True])
def test_non_finite_head_outputs_are_refused_with_the_tensor_named(config, static: bool) -> None:
    """A NaN in the head's outputs used to give boxes (or none) without a word."""
    detector = make_detector(config, static=static)
    cloud = random_clouds((600,))[0]
    assert len(detector(cloud)) > 0
    _poison_heatmap(detector)
    with pytest.raises(BackendError, match="output 'heatmap' holds 1 NaN or inf values"):
        detector(cloud)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", ["pytorch", "pytorch:fp16+channels_last+fuse_batchnorm"])
def test_static_cuda_pipeline_never_synchronises_before_the_result(config, kind: str) -> None:
    clouds = [c.pin_memory() for c in random_clouds((3000,))]
    detector = make_detector(config, static=True, kind=kind, device="cuda").load()
    detector(clouds)  # warm-up: allocator, cuDNN plans

    def hook(stage: str) -> None:
        if stage == NMS:  # what follows is the one copy of the result
            torch.cuda.set_sync_debug_mode("default")

    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        outputs = detector.run_stages(clouds, hook)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    # fp16 runs on CUDA only: its reference is the dynamic-shape pipeline on the same device.
    reference_device = "cpu" if kind == "pytorch" else "cuda"
    expected = make_detector(config, static=False, kind=kind, device=reference_device)(random_clouds((3000,)))
    if kind == "pytorch":
        assert torch.allclose(outputs.detections[0].boxes, expected[0].boxes, atol=1e-4)
