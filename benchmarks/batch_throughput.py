"""Batched inference: B clouds through one detector call (one captured graph per B), frames/s, and
the boxes of every batch item compared with the same cloud run alone.

    python3 benchmarks/batch_throughput.py --config j6gen2_base --device cuda \
        --variant pytorch:fp16+channels_last+fuse_batchnorm+fuse_relu+pipeline_graph \
        --batch 1 2 4 8 --out batch.json

The clouds are the benchmark's synthetic 64-beam frames (``benchmark.inputs.lidar_frame``, one
seed per batch item, the model's columns), pinned on the host; a call goes from points on the
host to boxes on the host. Random weights unless ``--checkpoint`` is given (timing does not depend
on them); a random model's heatmap is flat and gives no box, so its heatmap bias is raised until
about ``--boxes`` cells of the first cloud pass the decoder's score threshold, giving the box
comparison something to compare. Writes a JSON report and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch

from centerpoint_deploy.benchmark.inputs import lidar_frame, model_columns
from centerpoint_deploy.config import load_config
from centerpoint_deploy.structures import Detections
from centerpoint_deploy.variant import VariantSpec, build_detector
from centerpoint_deploy.verify.boxes import match_boxes


def compare(batched: Detections, single: Detections) -> dict[str, float | int | bool]:
    """How far one batch item's boxes are from the same cloud's boxes run alone, box for box: each
    box matched to its same-class nearest (``verify.boxes.match_boxes``), so that two boxes of
    near-equal scores listed in the other order still compare with themselves."""
    single_rows, batched_rows = (torch.from_numpy(rows) for rows in match_boxes(single, batched, MATCH_GATE))
    matched = len(single_rows)
    same = matched == len(single) == len(batched)
    box_diff = (batched.boxes[batched_rows] - single.boxes[single_rows]).abs().max().item() if matched else 0.0
    score_diff = (batched.scores[batched_rows] - single.scores[single_rows]).abs().max().item() if matched else 0.0
    return {"boxes": len(batched), "alone": len(single), "matched": matched, "same_boxes": same,
            "max_box_diff": box_diff, "max_score_diff": score_diff}


#: Metres between the centres of a batch item's box and its single run's for them to be the same box.
MATCH_GATE = 1.0


def boxes_model(config, cloud: torch.Tensor, boxes: int, device: str):
    """A random-weights CenterPoint whose heatmap bias puts about ``boxes`` cells of ``cloud``
    above the decoder's score threshold (the fp32 logits, before NMS)."""
    from centerpoint_deploy.model import build_model

    torch.manual_seed(0)
    model = build_model(config, device=device).eval()
    probe = build_detector(VariantSpec.parse("pytorch:fp32", device=device), config, model=model)
    with probe, torch.inference_mode():
        logits = torch.cat([maps["heatmap"].flatten() for maps in probe.task_maps(probe.run_stages(cloud).head_outputs)])
    threshold = config.decode.score_threshold
    shift = math.log(threshold / (1 - threshold)) + 0.5 - float(torch.topk(logits, boxes).values[-1])
    with torch.no_grad():
        for task_head in model.pts_bbox_head.task_heads:
            task_head.heatmap[-1].bias += shift
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="j6gen2_base")
    parser.add_argument("--variant", default="pytorch:fp16+channels_last+fuse_batchnorm+fuse_relu+pipeline_graph")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--boxes", type=int, default=100, help="random weights: heatmap cells raised above threshold")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("batch.json"))
    args = parser.parse_args()

    config = load_config(args.config)
    spec = VariantSpec.parse(args.variant, device=args.device)
    cuda = torch.device(args.device).type == "cuda"
    clouds = [torch.from_numpy(model_columns(lidar_frame(seed=seed), config)) for seed in range(max(args.batch))]
    if cuda:
        clouds = [cloud.pin_memory() for cloud in clouds]
    rows = []
    model = None if args.checkpoint else boxes_model(config, clouds[0], args.boxes, args.device)
    with build_detector(spec, config, checkpoint=args.checkpoint, model=model, reproducible=False) as detector:
        alone = [detector([cloud])[0] for cloud in clouds]
        for size in args.batch:
            batch = clouds[:size]
            for _ in range(args.warmup):
                detector(batch)
            times = []
            for _ in range(args.iterations):
                start = time.perf_counter()
                detector(batch)  # boxes come back on the host: the call ends when the GPU is done
                times.append((time.perf_counter() - start) * 1e3)
            results = detector(batch)
            p50 = statistics.median(times)
            rows.append({"batch": size, "p50_ms": p50, "p90_ms": sorted(times)[int(0.9 * (len(times) - 1))],
                         "frames_per_s": size / p50 * 1e3,
                         "items": [compare(r, a) for r, a in zip(results, alone)]})
    report = {"config": args.config, "variant": spec.name, "device": torch.cuda.get_device_name(0) if cuda else "cpu",
              "torch": torch.__version__, "points": [int(c.shape[0]) for c in clouds], "rows": rows}
    args.out.write_text(json.dumps(report, indent=2))
    print("| B | p50 ms | p90 ms | frames/s | items whose boxes all match alone's | max box diff | max score diff |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        items = row["items"]
        equal = sum(item["same_boxes"] for item in items)
        print(f"| {row['batch']} | {row['p50_ms']:.2f} | {row['p90_ms']:.2f} | {row['frames_per_s']:.0f} | "
              f"{equal}/{len(items)} | {max(i['max_box_diff'] for i in items):.2e} | "
              f"{max(i['max_score_diff'] for i in items):.2e} |")


if __name__ == "__main__":
    main()
