"""The node-equivalent post-processing: hand-built edges of every comparison, and an oracle on random maps."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from centerpoint_deploy.errors import ConfigError
from centerpoint_deploy.postprocess.autoware import AutowarePostprocess, decode_node, node_maps, remap_classes
from centerpoint_deploy.postprocess.node_nms import NodeBoxes, circle_nms_node, iou_bev_nms_node
from centerpoint_deploy.postprocess.node_params import ClassRemapper, NodePostprocessParams, ScoreThresholds

from . import node_oracle
from .test_decode import blank_maps, place

NAMES = ("car", "truck", "bus", "bicycle", "pedestrian")


def sigmoid32(logit: float) -> float:
    return float(np.float32(1) / (np.float32(1) + np.exp(-np.float32(logit))))


def params_with(bins=(50.0, 90.0, 121.0, 200.0), scores=None, yaw=(0.3, 0.3, 0.3, 0.3, 0.0), remapper=None,
                **nms) -> NodePostprocessParams:
    thresholds = ScoreThresholds(NAMES, tuple(bins), tuple(tuple(r) for r in scores) if scores else ())
    return NodePostprocessParams(thresholds, tuple(yaw), remapper=remapper, **nms)


def boxes_of(rows: list[tuple], labels: list[int]) -> NodeBoxes:
    """``rows``: ``(x, y, l, w, yaw)`` in rank order."""
    table = torch.zeros(len(rows), 9)
    for i, (x, y, length, width, yaw) in enumerate(rows):
        table[i, [0, 1, 3, 4, 6]] = torch.tensor([x, y, length, width, yaw], dtype=torch.float32)
        table[i, 5] = 1.0
    count = len(rows)
    return NodeBoxes(table[None], torch.linspace(0.9, 0.5, count)[None], torch.tensor(labels)[None],
                     torch.arange(count)[None], torch.ones(1, count, dtype=torch.bool))


def circle(boxes: NodeBoxes, distance: float) -> list[bool]:
    keep, converged = circle_nms_node(boxes, distance)
    assert bool(converged.all())
    return keep[0].tolist()


def iou_nms(boxes: NodeBoxes, names: tuple[str, ...], search: float, threshold: float) -> list[bool]:
    keep, fits = iou_bev_nms_node(boxes, boxes.valid, names, search, threshold)
    assert bool(fits.all())
    return keep[0].tolist()


def remapped(boxes: NodeBoxes, params: NodePostprocessParams) -> list[int]:
    return remap_classes(boxes.boxes[0], boxes.labels[0], params).tolist()


def kept_count(maps, config, params) -> int:
    (boxes,) = decode_node(node_maps(maps, True), config, params)
    return int(boxes.valid.sum())


# ----- decode -------------------------------------------------------------------------------
def test_known_box_keeps_size_and_heading_through_the_y_axis_export(tiny_config) -> None:
    maps = blank_maps()
    place(maps, cls=2, y=10, x=20, logit=2.0, reg=(0.25, 0.5), z=0.7, lwh=(4.0, 2.0, 1.5), sin_cos=(1.0, 0.0),
          vel=(1.5, -0.5))
    (det,) = AutowarePostprocess(tiny_config)([maps])
    assert det.labels.tolist() == [2]
    assert det.scores.tolist() == pytest.approx([sigmoid32(2.0)])
    # x = 0.4 * 1 * (20 + 0.25) - 12.8 (no half cell), y = 0.4 * 10.5 - 12.8; yaw recovered through -atan2 - pi/2
    assert det.boxes[0].tolist() == pytest.approx([-4.7, -8.6, 0.7, 4.0, 2.0, 1.5, math.pi / 2, 1.5, -0.5], abs=1e-5)


def test_a_plain_export_gives_the_cars_swapped_sizes_and_turned_heading(tiny_config) -> None:
    maps = blank_maps()
    place(maps, cls=0, y=30, x=30, logit=2.0, lwh=(4.0, 2.0, 1.5), sin_cos=(0.0, 1.0))  # theta = 0
    (det,) = AutowarePostprocess(tiny_config, rot_y_axis_reference=False)([maps])
    # the node reads channel 0 as width and publishes -atan2(sin, cos) - pi/2
    assert det.boxes[0, 3:7].tolist() == pytest.approx([2.0, 4.0, 1.5, -math.pi / 2], abs=1e-6)


def test_score_threshold_edge_is_inclusive(tiny_config) -> None:
    maps = blank_maps()
    place(maps, cls=1, y=32, x=32, logit=0.3, sin_cos=(0.0, 1.0))
    edge = sigmoid32(0.3)
    at_edge = [[0.35] * 4, [edge] * 4, [0.35] * 4, [0.35] * 4, [0.35] * 4]
    above = [[0.35] * 4, [float(np.nextafter(np.float32(edge), np.float32(1)))] * 4, [0.35] * 4, [0.35] * 4,
             [0.35] * 4]
    assert kept_count(maps, tiny_config, params_with(scores=at_edge)) == 1
    assert kept_count(maps, tiny_config, params_with(scores=above)) == 0


def test_distance_bin_upper_limit_is_exclusive(tiny_config) -> None:
    maps = blank_maps()
    place(maps, cls=0, y=40, x=50, logit=0.0, reg=(0.3, 0.7))  # score 0.5
    x = np.float32(0.4) * np.float32(1) * (np.float32(50) + np.float32(0.3)) + np.float32(-12.8)
    y = np.float32(0.4) * np.float32(1) * (np.float32(40) + np.float32(0.7)) + np.float32(-12.8)
    radial = float(np.sqrt(x * x + y * y))
    # a box exactly at a bin's upper limit falls in the next bin: bin 0 demands 0.4, bin 1 0.6
    scores = [[0.4, 0.6, 0.6]] + [[0.35] * 3] * 4
    at_limit = params_with(bins=(radial, 100.0, 200.0), scores=scores)
    past_limit = params_with(bins=(float(np.nextafter(np.float32(radial), np.float32(100))), 100.0, 200.0),
                             scores=scores)
    assert kept_count(maps, tiny_config, at_limit) == 0
    assert kept_count(maps, tiny_config, past_limit) == 1
    beyond_last = params_with(bins=(radial,), scores=[[0.0]] * 5)  # past the last limit: dropped, whatever the score
    assert kept_count(maps, tiny_config, beyond_last) == 0


def test_yaw_norm_edge_is_inclusive_and_zeroes_the_score(tiny_config) -> None:
    maps = blank_maps()
    place(maps, cls=0, y=20, x=20, logit=1.0, sin_cos=(0.12, 0.16))
    rot = node_maps(maps, True)["rot"][0, :, 20, 20].numpy()
    norm = float(np.sqrt(rot[0] * rot[0] + rot[1] * rot[1]))
    keep = params_with(yaw=(norm, 0.3, 0.3, 0.3, 0.0))
    drop = params_with(yaw=(float(np.nextafter(np.float32(norm), np.float32(1))), 0.3, 0.3, 0.3, 0.0))
    assert kept_count(maps, tiny_config, keep) == 1
    assert kept_count(maps, tiny_config, drop) == 0


def test_argmax_tie_takes_the_first_class_and_its_threshold(tiny_config) -> None:
    maps = blank_maps()
    place(maps, cls=3, y=20, x=20, logit=1.0)
    maps["heatmap"][0, 1, 20, 20] = 1.0  # truck ties with bicycle
    scores = [[0.35] * 4, [0.9] * 4, [0.35] * 4, [0.1] * 4, [0.35] * 4]
    assert kept_count(maps, tiny_config, params_with(scores=scores)) == 0
    (boxes,) = decode_node(node_maps(maps, True), tiny_config, params_with())
    assert boxes.labels[0].tolist() == [1]


def test_nan_logits_never_win_and_an_all_nan_cell_is_dropped(tiny_config) -> None:
    maps = blank_maps()
    place(maps, cls=4, y=5, x=5, logit=2.0)
    maps["heatmap"][0, 0, 5, 5] = float("nan")
    maps["heatmap"][0, :, 9, 9] = float("nan")
    (boxes,) = decode_node(node_maps(maps, True), tiny_config, params_with())
    assert boxes.labels[0].tolist() == [4] and boxes.cells[0].tolist() == [5 * 64 + 5]


def test_equal_scores_keep_cell_order(tiny_config) -> None:
    maps = blank_maps()
    for y, x in ((40, 3), (2, 60), (2, 7)):
        place(maps, cls=0, y=y, x=x, logit=1.0)
    (boxes,) = decode_node(node_maps(maps, True), tiny_config, params_with())
    assert boxes.cells[0].tolist() == [2 * 64 + 7, 2 * 64 + 60, 40 * 64 + 3]


# ----- NMS ----------------------------------------------------------------------------------
def test_circle_nms_radius_edge_is_exclusive_and_greedy() -> None:
    at_edge = boxes_of([(0, 0, 1, 1, 0), (0.5, 0, 1, 1, 0)], [0, 1])
    assert circle(at_edge, 0.5) == [True, True]  # 0.25 < 0.25 is false
    inside = boxes_of([(0, 0, 1, 1, 0), (0.499, 0, 1, 1, 0)], [0, 1])
    assert circle(inside, 0.5) == [True, False]  # class-agnostic
    chain = boxes_of([(0, 0, 1, 1, 0), (0.4, 0, 1, 1, 0), (0.8, 0, 1, 1, 0)], [0, 0, 0])
    assert circle(chain, 0.5) == [True, False, True]  # a suppressed box suppresses nothing


def test_iou_nms_threshold_edge_is_exclusive() -> None:
    pair = boxes_of([(0, 0, 2, 2, 0), (1.0, 0, 2, 2, 0)], [0, 0])  # IoU = 2 / 6
    third = 1 / 3
    assert iou_nms(pair, NAMES, 10.0, third + 1e-9) == [True, True]
    assert iou_nms(pair, NAMES, 10.0, third - 1e-9) == [True, False]


def test_iou_nms_pedestrian_rule_and_search_distance() -> None:
    overlap = [(0, 0, 1, 1, 0.3), (0.1, 0, 1, 1, 0.3)]
    assert iou_nms(boxes_of(overlap, [4, 0]), NAMES, 10.0, 0.1) == [True, True]  # ped vs car
    assert iou_nms(boxes_of(overlap, [0, 4]), NAMES, 10.0, 0.1) == [True, True]
    assert iou_nms(boxes_of(overlap, [4, 4]), NAMES, 10.0, 0.1) == [True, False]
    assert iou_nms(boxes_of(overlap, [0, 2]), NAMES, 10.0, 0.1) == [True, False]  # car vs bus
    long = [(0, 0, 30, 3, 0), (10, 0, 30, 3, 0)]  # centres 10 m apart: compared (<=)
    assert iou_nms(boxes_of(long, [1, 1]), NAMES, 10.0, 0.1) == [True, False]
    assert iou_nms(boxes_of(long, [1, 1]), NAMES, 9.99, 0.1) == [True, True]


def test_iou_nms_is_not_greedy() -> None:
    # A overlaps B, B overlaps C, A and C apart: the node drops C although B is dropped too
    chain = boxes_of([(0, 0, 2, 2, 0), (1.2, 0, 2, 2, 0), (2.4, 0, 2, 2, 0)], [0, 0, 0])
    assert iou_nms(chain, NAMES, 10.0, 0.1) == [True, False, False]


def test_iou_of_rotated_boxes_matches_the_polygon_oracle() -> None:
    generator = torch.Generator().manual_seed(3)
    rows = torch.rand(60, 5, generator=generator, dtype=torch.float64)
    rows[:, :2] *= 3
    rows[:, 2:4] = rows[:, 2:4] * 3 + 0.2
    rows[:, 4] = (rows[:, 4] - 0.5) * 2 * math.pi
    from centerpoint_deploy.postprocess.rotated_iou import bev_iou_pairs

    a, b = rows[:30], rows[30:]
    ours = bev_iou_pairs(a, b).tolist()
    oracle = [node_oracle.iou(*({"x": r[0], "y": r[1], "l": r[2], "w": r[3], "yaw": r[4]} for r in (p.tolist(), q.tolist())))
              for p, q in zip(a, b)]
    assert ours == pytest.approx(oracle, abs=1e-9)
    assert sum(v > 0 for v in oracle) > 10  # the pairs overlap often enough to test something
    same = bev_iou_pairs(a, a)
    assert same.tolist() == pytest.approx([1.0] * 30, abs=1e-9)


# ----- remapper -----------------------------------------------------------------------------
def remapper(min_area: float, max_area: float, names=NAMES) -> ClassRemapper:
    n = len(names)
    car, truck, bus = names.index("car"), names.index("truck"), names.index("bus")
    allow = [[0] * n for _ in range(n)]
    low = [[0.0] * n for _ in range(n)]
    high = [[0.0] * n for _ in range(n)]
    for target in (truck, bus):  # both allowed, same range: the node takes TRUCK, first in Autoware's order
        allow[car][target], low[car][target], high[car][target] = 1, min_area, max_area
    return ClassRemapper(tuple(names), tuple(map(tuple, allow)), tuple(map(tuple, low)), tuple(map(tuple, high)))


def test_remapper_area_edges_are_inclusive() -> None:
    area = float(np.float32(4.0 * 2.0))
    boxes = boxes_of([(0, 0, 4.0, 2.0, 0)], [0])
    for low, high, expected in ((area, 20.0, 1), (1.0, area, 1), (float(np.nextafter(area, 99)), 20.0, 0),
                                (1.0, float(np.nextafter(area, 0)), 0), (1.0, math.inf, 1)):
        params = params_with(remapper=remapper(low, high))
        assert remapped(boxes, params) == [expected], (low, high)


def test_remapper_walks_targets_in_autoware_label_order() -> None:
    names = ("car", "bus", "truck", "bicycle", "pedestrian")  # bus before truck in the model
    params = NodePostprocessParams(ScoreThresholds(names), (0.3, 0.3, 0.3, 0.3, 0.0),
                                   remapper=remapper(1.0, 50.0, names))
    assert remapped(boxes_of([(0, 0, 4.0, 2.0, 0)], [0]), params) == [2]  # truck


def test_node_matrices_round_trip_and_refuse_a_foreign_target() -> None:
    original = remapper(2.0, 30.0)
    allow, low, high = original.to_node_matrices()
    assert len(allow) == 64 and allow[1 * 8 + 2] == 1 and low[1 * 8 + 3] == 2.0  # CAR -> TRUCK, CAR -> BUS
    assert ClassRemapper.from_node_matrices(NAMES, allow, low, high) == original
    allow[1 * 8 + 4] = 1  # CAR -> TRAILER: not a class of this model
    with pytest.raises(ConfigError, match="TRAILER"):
        ClassRemapper.from_node_matrices(NAMES, allow, low, high)
    with pytest.raises(ConfigError, match="64 values"):
        ClassRemapper.from_node_matrices(NAMES, allow[:63], low, high)


# ----- the whole post-processing against the oracle ---------------------------------------
def oracle_case(make_config, seed: int):
    """A 32 x 32 grid, two frames of random maps and parameters with plenty of overlaps."""
    config = make_config(voxelization={"point_cloud_range": [-6.4, -6.4, -3.0, 6.4, 6.4, 5.0]})
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0.2, 0.7, size=(5, 3)).round(3).tolist()
    params = NodePostprocessParams(ScoreThresholds(NAMES, (4.0, 7.0, 8.5), tuple(map(tuple, scores))),
                                   tuple(rng.uniform(0.0, 0.8, size=5).round(3).tolist()),
                                   circle_nms_dist_threshold=0.9, iou_nms_search_distance_2d=5.0,
                                   iou_nms_threshold=0.15, remapper=remapper(3.0, 9.0))
    generator = torch.Generator().manual_seed(seed)
    shapes = {"heatmap": 5, "reg": 2, "height": 1, "dim": 3, "rot": 2, "vel": 2}
    maps = {name: torch.randn(2, ch, 32, 32, generator=generator) for name, ch in shapes.items()}
    maps["dim"] = maps["dim"] * 0.4 + 0.6
    return config, params, maps


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_the_loop_oracle_on_random_maps(make_config, seed: int) -> None:
    config, params, maps = oracle_case(make_config, seed)
    results = AutowarePostprocess(config, params)([maps])
    total = 0
    for item, det in enumerate(results):
        node = {name: t[item].numpy() for name, t in node_maps(maps, True).items()}
        expected = node_oracle.run(node, config, params)
        total += len(expected)
        assert det.labels.tolist() == [b["label"] for b in expected]
        assert det.scores.tolist() == pytest.approx([b["score"] for b in expected], abs=3e-7)  # exp: 1 ulp
        expected_boxes = torch.tensor([[b["x"], b["y"], b["l"], b["w"]] for b in expected])
        assert torch.allclose(det.boxes[:, [0, 1, 3, 4]], expected_boxes, atol=1e-6, rtol=0)
        yaw_diff = det.boxes[:, 6].double() - torch.tensor([b["yaw"] for b in expected], dtype=torch.float64)
        assert torch.remainder(yaw_diff + math.pi, 2 * math.pi).sub(math.pi).abs().max() < 1e-5
    assert total > 20  # enough boxes survive to compare something


def same_detections(got, expected) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert torch.equal(g.boxes, e.boxes) and torch.equal(g.scores, e.scores) and torch.equal(g.labels, e.labels)


@pytest.mark.parametrize("capacity", [1024, 6])
def test_fixed_shapes_give_the_exact_boxes_or_run_again(make_config, capacity: int) -> None:
    """The GPU's fixed-shape selection, run on the CPU: exact where its room sufficed, and an item
    with more kept cells than ``capacity`` is flagged and run again exactly."""
    config, params, maps = oracle_case(make_config, 0)
    node = AutowarePostprocess(config, params, capacity=capacity)
    exact = node([maps])
    fixed = node.select([maps], fixed_shapes=True)
    assert fixed.exact.tolist() == [capacity == 1024] * 2
    calls = []
    same_detections(node.finish(fixed, lambda: calls.append(1) or [maps]), exact)
    assert len(calls) == (capacity != 1024)
    assert sum(len(d) for d in exact) > 20


def test_too_few_rounds_or_pairs_are_flagged(make_config) -> None:
    from centerpoint_deploy.postprocess.autoware import decode_node_candidates, select_node_boxes

    config, params, maps = oracle_case(make_config, 1)
    candidates = decode_node_candidates(node_maps(maps, True), config, params, capacity=1024)
    exact = select_node_boxes(candidates, config, params, rows=None)
    roomy = select_node_boxes(candidates, config, params, 1024, rounds=64, pair_budget=4096)
    assert roomy.exact.all()
    for item in range(2):  # the same kept boxes (the padding rows may hold other empty cells)
        assert all(torch.equal(r, e) for r, e in zip(roomy.kept(item), exact.kept(item)))
    assert not select_node_boxes(candidates, config, params, 1024, rounds=1, pair_budget=4096).exact.any()
    assert not select_node_boxes(candidates, config, params, 1024, rounds=64, pair_budget=1).exact.any()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_gpus_fixed_shapes_match_the_cpus_exact_boxes(make_config) -> None:
    config, params, maps = oracle_case(make_config, 0)
    node = AutowarePostprocess(config, params, capacity=1024)  # every cell of the 32 x 32 grid
    on_gpu = node.select([{k: v.cuda() for k, v in maps.items()}])
    assert on_gpu.exact.all()
    got, expected = node.finish(on_gpu.to_host(), lambda: pytest.fail("ran again")), node([maps])
    for g, e in zip(got, expected):  # the same boxes; the GPU's exp and atan2 differ from the CPU's by ulps
        assert torch.equal(g.labels, e.labels) and len(g) > 10
        assert torch.allclose(g.boxes, e.boxes, atol=1e-5) and torch.allclose(g.scores, e.scores, atol=1e-6)


def test_refuses_multi_task_models_and_foreign_parameters(make_config, tiny_config) -> None:
    two_tasks = make_config(head={"tasks": [{"class_names": ["car", "truck"]},
                                            {"class_names": ["bus", "bicycle", "pedestrian"]}]},
                            nms={"min_radius": [1.0, 1.0]})
    with pytest.raises(ConfigError, match="one head task"):
        AutowarePostprocess(two_tasks)
    other = NodePostprocessParams.defaults(("a", "b", "c", "d", "e"))
    with pytest.raises(ConfigError, match="name classes"):
        AutowarePostprocess(tiny_config, other)


def test_runs_on_the_maps_device_dtype(tiny_config) -> None:
    maps = blank_maps()
    place(maps, cls=0, y=20, x=20, logit=1.0, lwh=(2.0, 1.0, 1.0))
    half = {name: t.half() for name, t in maps.items()}
    (det,) = AutowarePostprocess(tiny_config)([half])
    assert det.boxes.dtype == torch.float32 and len(det) == 1
    assert dataclasses.is_dataclass(decode_node(node_maps(maps, True), tiny_config, params_with())[0])


def test_modes_from_the_config_and_bad_values(make_config, tiny_config) -> None:
    from centerpoint_deploy.config.schema import ModelConfig
    from centerpoint_deploy.postprocess.modes import Mmdet3dPostprocess, build_postprocess

    assert isinstance(build_postprocess(tiny_config), Mmdet3dPostprocess)
    node = ModelConfig.from_dict({**tiny_config.to_dict(), "postprocess": "autoware"})
    assert isinstance(build_postprocess(node), AutowarePostprocess)
    with pytest.raises(ConfigError, match="postprocess"):
        ModelConfig.from_dict({**tiny_config.to_dict(), "postprocess": "node"})
    with pytest.raises(ConfigError, match="voxelization.mode"):
        make_config(voxelization={"mode": "random"})


def test_cell_boxes_are_every_kept_cell_and_hold_the_nodes_boxes(make_config) -> None:
    """The node's box of every cell its decode keeps (item 0, before NMS, remapped): one per kept cell,
    and each box the node outputs is one of them, equal in every column."""
    config, params, maps = oracle_case(make_config, 1)
    node = AutowarePostprocess(config, params)
    cells = node.cell_boxes([maps])
    assert len(cells) == kept_count({k: v[:1] for k, v in maps.items()}, config, params)
    kept = node([maps])[0]
    assert len(kept) > 5
    rows = {tuple(row) for row in torch.cat([cells.boxes, cells.scores[:, None], cells.labels[:, None].float()],
                                            1).tolist()}
    assert all(tuple(row) in rows for row in torch.cat([kept.boxes, kept.scores[:, None],
                                                        kept.labels[:, None].float()], 1).tolist())


def test_loosened_parameters_lower_every_threshold_down_to_zero() -> None:
    params = NodePostprocessParams(ScoreThresholds(("car", "pedestrian"), (50.0, 90.0), ((0.35, 0.5), (0.01, 0.4))),
                                   (0.3, 0.0), circle_nms_dist_threshold=0.7)
    loose = params.loosened(0.02, 0.1)
    assert np.allclose(loose.thresholds.min_confidence_scores, ((0.33, 0.48), (0.0, 0.38)), rtol=0, atol=1e-12)
    assert loose.yaw_norm_thresholds == pytest.approx((0.2, 0.0))
    assert loose.circle_nms_dist_threshold == 0.7 and loose.thresholds.distance_bin_upper_limits == (50.0, 90.0)
    assert params.loosened(0.0, 0.0) == params
