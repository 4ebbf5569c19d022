"""mAP of the PyTorch fast paths against fp32 on one dataset (the "fp16 within 0.005 mAP" target).

    python benchmarks/fp16_accuracy.py --config demo --checkpoint demo.pth --dataset data/synth \
        --out results/accuracy --device cuda [--variant pytorch:fp16+channels_last+fuse_batchnorm --variant pytorch:bf16+channels_last+fuse_batchnorm]

Runs :func:`centerpoint_deploy.evaluate.runner.evaluate_backends` with the reference
``pytorch`` (fp32, TF32 off) first, then every fast-path kind of
``centerpoint_deploy.variant`` (PyTorch variants); prints and writes ``accuracy.json`` with each
variant's mAP, NDS and mAP difference to fp32.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from centerpoint_deploy.config import load_config
from centerpoint_deploy.data import open_dataset
from centerpoint_deploy.evaluate.io import load_metric_config
from centerpoint_deploy.evaluate.runner import evaluate_backends
from centerpoint_deploy.variant import VariantSpec, build_detector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--metric", default="t4")
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--variant", action="append", help="a PyTorch variant, e.g. pytorch:fp16+channels_last")
    args = parser.parse_args()

    config = load_config(args.config)
    dataset = open_dataset(args.dataset, class_names=config.class_names, sweeps_num=config.points.sweeps_num,
                           load_dim=config.points.load_dim)
    frames = list(range(min(len(dataset), args.max_frames or len(dataset))))
    kinds = ["pytorch", *(args.variant or ["pytorch:fp16+channels_last+fuse_batchnorm"])]
    detectors = {kind: build_detector(VariantSpec.parse(kind, device=args.device), config, checkpoint=args.checkpoint)
                 for kind in kinds}
    metrics = evaluate_backends(dataset, detectors, args.out, load_metric_config(args.metric, config.class_names),
                                frames=frames, plots=False, cache=False)
    reference = metrics["pytorch"].mean_ap
    summary = {kind: {"mAP": m.mean_ap, "NDS": m.nd_score, "mAP_minus_fp32": m.mean_ap - reference}
               for kind, m in metrics.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "accuracy.json").write_text(json.dumps({"frames": len(frames), "metric": args.metric,
                                                       "results": summary}, indent=2))
    for kind, row in summary.items():
        print(f"{kind:14s} mAP {row['mAP']:.4f}  NDS {row['NDS']:.4f}  mAP - fp32 {row['mAP_minus_fp32']:+.4f}")


if __name__ == "__main__":
    main()
