"""An independent, deliberately plain re-implementation of the node's post-processing (test oracle).

Loops over cells and boxes in Python with numpy float32 scalars, written from the node's
kernels (``postprocess_kernel.cu`` generateBoxes3D_kernel, ``circle_nms_kernel.cu``,
``non_maximum_suppression.cpp``, ``detection_class_remapper.cpp``) and nothing else: its
polygon IoU clips with Sutherland-Hodgman, its remapper reads the node's flat 8 x 8 matrices.
"""

from __future__ import annotations

import math

import numpy as np

from centerpoint_deploy.postprocess.node_params import NodePostprocessParams

f32 = np.float32
LABELS = {"CAR": 1, "TRUCK": 2, "BUS": 3, "TRAILER": 4, "MOTORBIKE": 5, "BICYCLE": 6, "PEDESTRIAN": 7}


def decode(maps: dict[str, np.ndarray], voxel_size, x_min, y_min, ds, params: NodePostprocessParams) -> list[dict]:
    """``maps``: one item, ``name -> [ch, h, w]`` float32, in the node's reading (dim = w, l, h)."""
    heat = maps["heatmap"]
    classes, height, width = heat.shape
    limits = [f32(v) for v in params.thresholds.distance_bin_upper_limits]
    boxes = []
    for yi in range(height):
        for xi in range(width):
            label, best = -1, f32(-1)
            for ci in range(classes):
                score = f32(1) / (f32(1) + np.exp(-heat[ci, yi, xi]))
                if score > best:
                    label, best = ci, score
            if label == -1:
                continue
            x = f32(voxel_size[0]) * f32(ds) * (f32(xi) + maps["reg"][0, yi, xi]) + f32(x_min)
            y = f32(voxel_size[1]) * f32(ds) * (f32(yi) + maps["reg"][1, yi, xi]) + f32(y_min)
            radial = np.sqrt(x * x + y * y)
            bucket = -1
            for i, limit in enumerate(limits):
                if radial < limit:
                    bucket = i
                    break
            if bucket == -1:
                continue
            if best < f32(params.thresholds.min_confidence_scores[label][bucket]):
                continue
            s, c = maps["rot"][0, yi, xi], maps["rot"][1, yi, xi]
            norm = np.sqrt(s * s + c * c)
            score = best if norm >= f32(params.yaw_norm_thresholds[label]) else f32(0)
            if not score > 0:
                continue
            yaw = -float(np.arctan2(s, c)) - math.pi / 2
            boxes.append({"cell": yi * width + xi, "score": float(score), "label": label,
                          "x": float(x), "y": float(y), "z": float(maps["height"][0, yi, xi]),
                          "l": float(np.exp(maps["dim"][1, yi, xi])), "w": float(np.exp(maps["dim"][0, yi, xi])),
                          "h": float(np.exp(maps["dim"][2, yi, xi])), "yaw": yaw})
    boxes.sort(key=lambda b: -b["score"])  # Python's sort is stable: ties stay in cell order
    return boxes


def circle_nms(boxes: list[dict], distance: float) -> list[dict]:
    limit = f32(distance) * f32(distance)
    removed = [False] * len(boxes)
    kept = []
    for i, box in enumerate(boxes):
        if removed[i]:
            continue
        kept.append(box)
        for j in range(i + 1, len(boxes)):
            dx, dy = f32(box["x"]) - f32(boxes[j]["x"]), f32(box["y"]) - f32(boxes[j]["y"])
            if dx * dx + dy * dy < limit:
                removed[j] = True
    return kept


def _corners(b: dict) -> list[tuple[float, float]]:
    c, s = math.cos(b["yaw"]), math.sin(b["yaw"])
    out = []
    for u, v in ((1, 1), (-1, 1), (-1, -1), (1, -1)):
        lx, ly = u * b["l"] / 2, v * b["w"] / 2
        out.append((b["x"] + c * lx - s * ly, b["y"] + s * lx + c * ly))
    return out


def _area(poly) -> float:
    return abs(sum(poly[k][0] * poly[(k + 1) % len(poly)][1] - poly[(k + 1) % len(poly)][0] * poly[k][1]
                   for k in range(len(poly)))) / 2


def _clip(subject, clipper):
    """Sutherland-Hodgman: ``subject`` clipped by the convex counter-clockwise ``clipper``."""
    out = subject
    for k in range(len(clipper)):
        a, b = clipper[k], clipper[(k + 1) % len(clipper)]
        side = lambda p: (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])  # noqa: E731
        points, out = out, []
        for m in range(len(points)):
            p, q = points[m], points[(m + 1) % len(points)]
            sp, sq = side(p), side(q)
            if sp >= 0:
                out.append(p)
            if (sp >= 0) != (sq >= 0):
                t = sp / (sp - sq)
                out.append((p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])))
        if not out:
            return []
    return out


def iou(a: dict, b: dict) -> float:
    pa, pb = _corners(a), _corners(b)
    inter_poly = _clip(pa, pb)
    inter = _area(inter_poly) if len(inter_poly) >= 3 else 0.0
    if inter < 1e-6:
        return 0.0
    union = _area(pa) + _area(pb) - inter
    return 0.0 if union < 0.01 else min(1.0, inter / union)


def iou_nms(boxes: list[dict], class_names, search: float, threshold: float) -> list[dict]:
    labels = [LABELS.get(class_names[b["label"]].upper(), 0) for b in boxes]
    out = []
    for t in range(len(boxes)):
        worst = 0.0
        for s in range(t):
            if labels[s] != labels[t] and (labels[s] == 7 or labels[t] == 7):
                continue
            dx, dy = boxes[s]["x"] - boxes[t]["x"], boxes[s]["y"] - boxes[t]["y"]
            if dx * dx + dy * dy > search * search:
                continue
            value = iou(boxes[t], boxes[s])
            worst = max(worst, value)
            if value > threshold:
                break
        if worst <= threshold:
            out.append(boxes[t])
    return out


def remap(boxes: list[dict], class_names, params: NodePostprocessParams) -> list[int]:
    """New model-class labels, through the node's 8 x 8 Autoware-label matrices."""
    allow, low, high = params.remapper.to_node_matrices()
    big = np.finfo(np.float64).max
    fix = lambda v: v if math.isfinite(v) else big  # noqa: E731
    semantic = [LABELS.get(n.upper(), 0) for n in class_names]
    back = {lab: i for i, lab in enumerate(semantic)}
    out = []
    for b in boxes:
        area = float(f32(b["l"] * b["w"]))
        label = semantic[b["label"]]
        for target in range(8):
            cell = label * 8 + target
            if allow[cell] and area >= fix(low[cell]) and area <= fix(high[cell]):
                label = target
                break
        out.append(back[label])
    return out


def run(maps, config, params: NodePostprocessParams) -> list[dict]:
    """Everything, for one item of node-convention numpy maps; boxes with their final ``label``."""
    v = config.voxelization
    boxes = decode(maps, v.voxel_size, v.point_cloud_range[0], v.point_cloud_range[1], config.decode.out_size_factor,
                   params)
    boxes = circle_nms(boxes, params.circle_nms_dist_threshold)
    boxes = iou_nms(boxes, config.class_names, params.iou_nms_search_distance_2d, params.iou_nms_threshold)
    for box, label in zip(boxes, remap(boxes, config.class_names, params)):
        box["label"] = label
    return boxes
