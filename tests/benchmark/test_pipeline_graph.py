"""The whole-pipeline CUDA graph (``StaticSettings(graph=True)``): its inputs and body on the CPU, the replay on CUDA.

On the CPU the captured body (static stages on the padded point buffer, bare networks, packed
result) is run directly and must give the static path's boxes; the option itself is refused.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import pytest
import torch

from centerpoint_deploy.backends.base import Backend
from centerpoint_deploy.config import load_config
from centerpoint_deploy.errors import BackendError, ConfigError
from centerpoint_deploy.device import device_constant
from centerpoint_deploy.point_buffer import MIN_CAPACITY, PointBuffer, padding_point, pillar_capacity, point_capacity
from centerpoint_deploy.postprocess import unpack_host
from centerpoint_deploy.preprocess import voxelize
from centerpoint_deploy.preprocess.voxelize import voxelize_padded
from centerpoint_deploy.stages import no_hook
from centerpoint_deploy.static_pipeline import HybridRun, StaticPipeline, StaticSettings
from centerpoint_deploy.variant import VariantSpec, build_detector

from .test_static_pipeline import assert_deferred_checks_raise, make_detector, random_clouds


@pytest.fixture(scope="module")
def config():
    tiny = load_config("tiny")
    return replace(tiny, head=replace(tiny.head, init_bias=0.0))


def test_point_capacity_is_the_next_quarter_octave_within_bounds() -> None:
    assert point_capacity(1, 400_000) == MIN_CAPACITY == 16_384
    assert point_capacity(16_384, 400_000) == 16_384 and point_capacity(16_385, 400_000) == 20_480
    assert point_capacity(96_508, 400_000) == 98_304 and point_capacity(131_073, 400_000) == 163_840
    assert point_capacity(188_283, 400_000) == 196_608 and point_capacity(999_903, 1 << 21) == 1 << 20
    assert point_capacity(300_000, 400_000) == 327_680 and point_capacity(350_000, 340_000) == 340_000
    assert point_capacity(5_000, 2_500) == 2_500
    for rows in range(1, 3_000_000, 7919):   # never below the cloud, never 1.25 times over it (past the minimum)
        capacity = point_capacity(rows, 1 << 22)
        assert rows <= capacity and (capacity <= 1.25 * rows or capacity == MIN_CAPACITY)


def test_padding_point_lies_just_beyond_the_grid(config) -> None:
    cfg = config.voxelization
    point = padding_point(cfg, 5)
    assert point.tolist() == [pytest.approx(cfg.point_cloud_range[3] + cfg.voxel_size[0]), 0.0, 0.0, 0.0, 0.0]
    assert device_constant((1.5, -2.0), torch.device("cpu")).tolist() == [1.5, -2.0]


def test_point_buffer_pads_and_repads(config) -> None:
    buffer = PointBuffer(2, 8, 5, config.voxelization, torch.device("cpu"))
    pad = padding_point(config.voxelization, 5)
    first, second = torch.ones(5, 5), torch.full((2, 5), 2.0)
    buffer.load([first, second])
    assert torch.equal(buffer.points[0, :5], first) and torch.equal(buffer.points[1, :2], second)
    assert torch.equal(buffer.points[0, 5:], pad.expand(3, 5)) and torch.equal(buffer.points[1, 2:], pad.expand(6, 5))
    buffer.load([torch.zeros(3, 5), torch.zeros(4, 5)])  # fewer rows in cloud 0: rows 3, 4 are padding again
    assert torch.equal(buffer.points[0, :3], torch.zeros(3, 5)) and torch.equal(buffer.points[0, 3:], pad.expand(5, 5))
    assert torch.equal(buffer.points[1, :4], torch.zeros(4, 5)) and torch.equal(buffer.points[1, 4:], pad.expand(4, 5))
    assert [c.shape for c in buffer.clouds] == [torch.Size([8, 5])] * 2


def test_padded_clouds_voxelize_like_the_clouds(config) -> None:
    clouds = random_clouds((700, 300))
    buffer = PointBuffer(2, 1000, 5, config.voxelization, torch.device("cpu"))
    buffer.load(clouds)
    expected, got = voxelize(clouds, config.voxelization), voxelize(buffer.clouds, config.voxelization)
    for field in ("points", "num_points", "coords"):
        assert torch.equal(getattr(got, field), getattr(expected, field)), field


@pytest.mark.parametrize("kind", ["pytorch", "pytorch:fp32+channels_last"])
def test_captured_body_gives_the_static_boxes(config, kind: str) -> None:
    detector = make_detector(config, static=True, kind=kind).load()
    canvas = detector._kept_canvas(2)  # a channels-last head: the graph keeps its BEV canvas
    assert (canvas is None) == (kind == "pytorch")
    buffer = PointBuffer(2, 2000, 5, config.voxelization, torch.device("cpu"))
    for seed in (0, 1, 0):  # a kept canvas must hold only the current frame's pillars
        clouds = random_clouds((1500, 700), seed=seed)
        expected = detector(clouds)
        buffer.load(clouds)
        run = detector._body(buffer.clouds, no_hook, capturing=True, canvas=canvas)  # what the graph records, run eagerly
        detections, converged, checks = unpack_host(run.packed, 2, run.rows)
        assert converged == [True, True] and checks[:2] == [0, 0]  # no non-finite point: padding is finite
        assert checks[8:] == [0] * 6  # nor a non-finite head output
        assert [len(d) for d in detections] == [len(d) for d in expected] and len(expected[0]) > 5
        for g, e in zip(detections, expected):
            assert torch.equal(g.boxes, e.boxes) and torch.equal(g.scores, e.scores) and torch.equal(g.labels, e.labels)


def test_captured_body_on_fewer_pillar_rows_gives_the_same_boxes_and_shows_an_overflow(config) -> None:
    detector = make_detector(config, static=True).load()
    clouds = random_clouds((1500, 700), seed=2)
    buffer = PointBuffer(2, 2000, 5, config.voxelization, torch.device("cpu"))
    buffer.load(clouds)
    expected = detector(clouds)
    kept = voxelize_padded(buffer.clouds, config.voxelization)[1].num_voxels.tolist()
    for rows, fits in ((max(kept), True), (max(kept) - 1, False)):
        run = detector._body(buffer.clouds, no_hook, capturing=True, pillar_rows=rows)
        assert run.pillar_rows == rows and run.features.shape[0] == 2 * rows
        detections, _, checks = unpack_host(run.packed, 2, run.rows)
        assert [checks[2], checks[5]] == kept   # the kept pillars, read by LaunchedRun.pillars_fit
        if fits:
            for g, e in zip(detections, expected):
                assert torch.allclose(g.boxes, e.boxes, atol=1e-5) and torch.equal(g.labels, e.labels)
    assert pillar_capacity(max(kept), 100_000) >= 1.5 * max(kept) and pillar_capacity(10, 3000) == 3000


class _OtherRuntime(Backend):
    """A non-PyTorch backend (not ``capturable``)."""

    kind = "other"
    input_specs = ()
    output_names = ()

    def _load_impl(self) -> None: ...

    def _infer_impl(self, feed):
        return {}


def test_graph_option_is_refused_where_it_cannot_run(config) -> None:
    with pytest.raises(ConfigError, match="needs a CUDA device; this pipeline runs on 'cpu'"):
        make_detector(config, static=True, graph=True)
    built = build_detector(VariantSpec.parse("pytorch"), config)
    encoder, head = built.encoder, built.head
    with pytest.raises(BackendError, match="captures both backends or neither; the encoder is 'other-cuda'"):
        StaticPipeline(config, _OtherRuntime("cuda"), head, device="cuda", settings=StaticSettings(graph=True))
    with pytest.raises(BackendError, match="other-cuda cannot run inside a CUDA graph capture"):
        _OtherRuntime("cuda").forward_in_capture(torch.zeros(1))
    with pytest.raises(ConfigError, match="max_points = 0 is invalid"):
        StaticPipeline(config, encoder, head, device="cuda", settings=StaticSettings(graph=True, max_points=0))
    with pytest.raises(ConfigError, match="runs mmdet3d's decode and NMS"):
        build_detector(VariantSpec.parse("pytorch:fp32+static"), config, postprocess=lambda maps: [])


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("kind", ["pytorch", "pytorch:fp16+channels_last+fuse_batchnorm"])
def test_graph_replay_equals_the_static_path(config, kind: str) -> None:
    eager = make_detector(config, static=True, kind=kind, device="cuda").load()
    graphed = make_detector(config, static=True, kind=kind, device="cuda", graph=True, max_points=2500).load()
    frames = [random_clouds((2000, 900), seed=3), random_clouds((1200, 2400), seed=4),  # fewer rows: re-padding
              random_clouds((2000, 900), seed=3)]
    for clouds in frames:
        expected, got = eager(clouds), graphed([c.pin_memory() for c in clouds])
        assert [len(d) for d in got] == [len(d) for d in expected] and len(expected[0]) > 5
        for g, e in zip(got, expected):
            assert g.boxes.device.type == "cpu"
            assert torch.allclose(g.boxes, e.boxes.cpu(), atol=1e-5) and torch.equal(g.labels, e.labels.cpu())
    # buffer rows: point_capacity, capped at max_points; pillar rows: all 4,000 (below MIN_PILLAR_ROWS)
    assert list(graphed._graphs) == [(2, 2500, 4000)]
    single = graphed(frames[0][0])  # batch 1: a second graph
    assert torch.allclose(single.boxes, eager(frames[0][0]).boxes.cpu(), atol=1e-5)
    assert list(graphed._graphs) == [(2, 2500, 4000), (1, 2500, 4000)]


@pytest.mark.cuda
@cuda
def test_larger_clouds_get_a_larger_buffer_and_graph(config) -> None:
    eager = make_detector(config, static=True, device="cuda").load()
    graphed = make_detector(config, static=True, device="cuda", graph=True, max_points=40_000).load()
    for size, seed in ((1000, 1), (20_000, 2), (16_384, 3), (30_000, 4)):
        cloud = random_clouds((size,), seed=seed)[0]
        got, expected = graphed(cloud), eager(cloud)
        assert torch.allclose(got.boxes, expected.boxes.cpu(), atol=1e-5) and torch.equal(got.labels, expected.labels.cpu())
    assert list(graphed._graphs) == [(1, 16_384, 4000), (1, 20_480, 4000), (1, 32_768, 4000)]


@pytest.mark.cuda
@cuda
def test_a_cloud_over_the_graphs_pillar_rows_runs_again_and_grows_them(config, monkeypatch) -> None:
    from centerpoint_deploy import static_pipeline

    monkeypatch.setattr(static_pipeline, "pillar_capacity", lambda pillars, max_voxels: min(pillars, max_voxels))
    eager = make_detector(config, static=True, device="cuda").load()
    graphed = make_detector(config, static=True, device="cuda", graph=True, max_points=2500).load()
    small, large = random_clouds((600,), seed=7)[0], random_clouds((2400,), seed=8)[0]
    few = int(voxelize_padded([small.cuda()], config.voxelization)[1].num_voxels[0])
    many = int(voxelize_padded([large.cuda()], config.voxelization)[1].num_voxels[0])
    assert few < many
    first = graphed.launch(small)
    assert first.graph == (1, 2500, few) and first.pillars_fit
    over = graphed.launch(large)   # the same buffer size: the graph of `few` pillar rows
    assert over.graph == (1, 2500, few) and not over.pillars_fit
    (got,), expected = over.detections(), eager(large)
    assert torch.allclose(got.boxes, expected.boxes.cpu(), atol=1e-5) and torch.equal(got.labels, expected.labels.cpu())
    heads = eager.run_stages(large).head_outputs
    for name, tensor in over.head_outputs_again().items():
        assert torch.allclose(tensor, heads[name], atol=1e-4), name
    again = graphed.launch(large)
    assert again.graph == (1, 2500, many) and again.pillars_fit
    (boxes,) = again.detections()
    assert torch.allclose(boxes.boxes, expected.boxes.cpu(), atol=1e-5)


@pytest.mark.cuda
@cuda
def test_graph_checks_inputs_and_falls_back_for_large_clouds(config) -> None:
    detector = make_detector(config, static=True, device="cuda", graph=True, max_points=1000, nms_rounds=1)
    assert_deferred_checks_raise(detector)
    big = random_clouds((1500,))[0]
    with pytest.warns(UserWarning, match=r"\[1500\] points exceed the CUDA graph's max_points=1000"):
        got = detector(big)
    with warnings.catch_warnings(record=True) as later:   # once per pipeline, not once per frame
        warnings.simplefilter("always")
        detector(big[:1400])
    assert not any("max_points" in str(w.message) for w in later)
    expected = make_detector(config, static=False)(big)  # nms_rounds=1 also exercises the exact NMS redo
    assert torch.allclose(got.boxes, expected.boxes, atol=1e-4)
    small = detector(big[:900])
    assert torch.allclose(small.boxes, make_detector(config, static=False)(big[:900]).boxes, atol=1e-4)


@pytest.mark.cuda
@cuda
def test_compiled_pipeline_graph_equals_the_static_path(config) -> None:
    eager = make_detector(config, static=True, kind="pytorch:fp16+channels_last+fuse_batchnorm", device="cuda").load()
    compiled = make_detector(config, static=True, kind="pytorch:fp16+channels_last+fuse_batchnorm", device="cuda", graph=True, compile=True).load()
    for seed in (5, 6):
        clouds = random_clouds((2000, 900), seed=seed)
        for got, expected in zip(compiled(clouds), eager(clouds)):
            assert len(got) == len(expected) > 5
            assert torch.allclose(got.boxes, expected.boxes.cpu(), atol=1e-3) and torch.equal(got.labels, expected.labels.cpu())


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("kind", ["pytorch", "pytorch:fp32+channels_last"])
def test_uncapturable_backends_run_between_captured_parts(config, kind: str) -> None:
    """ONNX Runtime's case, with PyTorch backends that claim not to be capturable: a HybridRun
    (channels-last: its scatter graph keeps the BEV canvas)."""
    eager = make_detector(config, static=True, kind=kind, device="cuda").load()
    hybrid = make_detector(config, static=True, kind=kind, device="cuda", graph=True, max_points=2500)
    for backend in (hybrid.encoder, hybrid.head):
        backend.capturable = False  # an instance attribute over the class's True
    assert not hybrid.captures_backends
    for seed in (7, 8, 7):
        clouds = random_clouds((2000, 900), seed=seed)
        got, expected = hybrid(clouds), eager(clouds)
        assert [len(d) for d in got] == [len(d) for d in expected] and len(expected[0]) > 5
        for g, e in zip(got, expected):
            assert torch.allclose(g.boxes, e.boxes.cpu(), atol=1e-5) and torch.equal(g.labels, e.labels.cpu())
    (run,) = hybrid._graphs.values()
    assert isinstance(run, HybridRun) and len(run.pre.graphs) == len(run.scatter.graphs) == len(run.post.graphs) == 1


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("compiled", [False, True])
def test_views_of_a_graph_replay_equal_the_static_path(config, compiled: bool) -> None:
    """evaluate's views come from the replayed graph (its head outputs), not from an uncaptured run;
    compiled, the node's selection too (recorded from its compiled kernels)."""
    from centerpoint_deploy.postprocess.modes import default_views
    from centerpoint_deploy.views import detect_views

    eager = make_detector(config, static=True, device="cuda").load()
    graphed = make_detector(config, static=True, device="cuda", graph=True, max_points=2500, compile=compiled).load()
    views = default_views(config)
    for seed in (9, 10):
        clouds = random_clouds((2000, 900), seed=seed)
        got, expected = detect_views(graphed, clouds, views), detect_views(eager, clouds, views)
        assert list(got) == ["mmdet3d", "autoware"]
        for name in got:
            for g, e in zip(got[name], expected[name]):
                assert len(g) == len(e) > 0
                assert torch.allclose(g.boxes.cpu(), e.boxes.cpu(), atol=1e-5)
                assert torch.equal(g.labels.cpu(), e.labels.cpu())
    assert list(graphed._graphs) == [(2, 2500, 4000)]  # the views were made from replays


@pytest.mark.cuda
@cuda
def test_views_read_after_later_replays_are_their_own_batchs(config) -> None:
    """evaluate reads a batch's views after queueing the next batch on the same graph: the boxes come
    from the host copy queued at launch, and what needs the overwritten device tensors (the node's
    decode of a frame with more cells than room) runs that batch again."""
    from centerpoint_deploy.postprocess.autoware import AutowarePostprocess
    from centerpoint_deploy.postprocess.modes import PostprocessView, default_views
    from centerpoint_deploy.views import detect_views, launch_views

    eager = make_detector(config, static=True, device="cuda").load()
    graphed = make_detector(config, static=True, device="cuda", graph=True, max_points=2500).load()
    views = [*default_views(config), PostprocessView("autoware", AutowarePostprocess(config, capacity=1), "tight")]
    batches = [random_clouds((2000, 900), seed=seed) for seed in (11, 12, 13)]
    launched = [launch_views(graphed, clouds, views) for clouds in batches]  # each replay rewrites the last
    for clouds, pending in zip(batches, launched):
        expected = detect_views(eager, clouds, views)
        for name, view in pending.items():
            got = view.result()
            assert [len(d) for d in got] == [len(d) for d in expected[name]] and len(got[0]) > 1, name
            for g, e in zip(got, expected[name]):
                assert torch.allclose(g.boxes.cpu(), e.boxes.cpu(), atol=1e-5) and torch.equal(g.labels.cpu(),
                                                                                               e.labels.cpu())
    assert list(graphed._graphs) == [(2, 2500, 4000)]


@pytest.mark.cuda
@cuda
def test_work_on_head_outputs_runs_beside_the_next_replay_on_its_own_copy(config) -> None:
    """on_head_outputs' side-stream replays read their own copy of each batch's head outputs: three
    batches queued on one graph (each replay rewrites the last's outputs) before any result is read."""
    graphed = make_detector(config, static=True, device="cuda", graph=True, max_points=2500).load()
    batches = [random_clouds((2000, 900), seed=seed) for seed in (21, 22, 23)]

    def totals(outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([outputs[name].float().sum() for name in sorted(outputs)])

    def to_host(result: torch.Tensor) -> tuple[torch.Tensor, torch.cuda.Event]:
        host = torch.empty(result.shape, dtype=result.dtype, pin_memory=True).copy_(result, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        return host, event

    queued = []
    for clouds in batches:
        launched = graphed.launch(clouds)
        queued.append(graphed.on_head_outputs(launched, "totals", totals, to_host))
    for clouds, (host, event) in zip(batches, queued):
        event.synchronize()
        expected = totals(graphed.run_stages(clouds).head_outputs).cpu()
        assert torch.allclose(host, expected, rtol=1e-4), (host, expected)
    assert len(graphed._on_outputs) == 1
