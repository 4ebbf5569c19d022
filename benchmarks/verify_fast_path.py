"""Box-level agreement of a PyTorch fast-path variant with plain fp32 on a dataset.

    python3 benchmarks/verify_fast_path.py --variant pytorch:fp32+fuse_batchnorm+fuse_relu+pipeline_graph \
        --config demo --checkpoint centerpoint_deploy/assets/demo_centerpoint.pth --device cuda

Runs the reference (plain fp32, TF32 off, eager) and the variant (a benchmark variant string,
e.g. with BatchNorm folding, fused conv+ReLU and the whole-pipeline CUDA graph) on the same
frames and compares their boxes with ``verify.boxes.compare_boxes`` at the tolerances of the
variant's precision, given the reference's box at every cell (so that a near-tied peak or a box
on a circle-NMS edge that reduced precision resolves the other way is told apart, its box checked
at its own cell; ``verify.boxes``). Prints each
failing frame's reasons; exits 1 when any frame fails.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from centerpoint_deploy.config import load_config
from centerpoint_deploy.data import open_dataset
from centerpoint_deploy.data.loader import load_clouds
from centerpoint_deploy.data.sample import default_sample_dir
from centerpoint_deploy.variant import VariantSpec, build_detector
from centerpoint_deploy.verify.boxes import DEFAULT_BOX_TOLERANCES, compare_boxes
from centerpoint_deploy.verify.run import frame_cells
from centerpoint_deploy.verify.tolerances import tolerance_class


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", required=True, help="a pytorch benchmark variant string")
    parser.add_argument("--config", default="demo")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--dataset", default=None, help="default: the generated sample set")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()

    config = load_config(args.config)
    variant = VariantSpec.parse(args.variant, device=args.device)
    checkpoint = Path(args.checkpoint)
    reference = build_detector(VariantSpec.parse("pytorch:fp32", device=args.device), config, checkpoint=checkpoint)
    fast = build_detector(variant, config, checkpoint=checkpoint)
    frames = open_dataset(args.dataset or default_sample_dir(), class_names=config.class_names)
    tolerance = DEFAULT_BOX_TOLERANCES[tolerance_class(variant.precision)]
    worst = {"center": 0.0, "size": 0.0, "yaw": 0.0, "score": 0.0}
    threshold = config.decode.score_threshold
    passed = boxes = moved = 0
    count = min(args.frames, len(frames))
    for index in range(count):
        points = load_clouds(frames, [index], config.points.use_dim)[0]
        stages = reference.run_stages(points)
        ref, test = stages.detections[0].to("cpu"), fast(points).to("cpu")
        result = compare_boxes(ref, test, tolerance, threshold, cells=frame_cells(reference, stages, tolerance))
        passed += bool(result)
        boxes += len(ref)
        moved += result.moved + result.nms_flips
        summary = result.to_dict()
        worst = {k: max(v, summary[f"max_{k}"] or 0.0) for k, v in worst.items()}
        if not result:
            print(f"frame {index}: " + "; ".join(result.reasons))
    shown = ", ".join(f"max {k} diff {v:.3g}" for k, v in worst.items())
    print(f"{args.variant} vs pytorch:fp32 on {count} frames ({boxes} reference boxes): "
          f"{passed}/{count} frames pass; {moved} moved peak(s) or NMS-edge flip(s); {shown} (those aside)")
    return 0 if passed == count else 1


if __name__ == "__main__":
    sys.exit(main())
