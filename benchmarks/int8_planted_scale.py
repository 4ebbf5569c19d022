"""Each INT8 layer of an INT8 demo export alone on the graph's own input, with one weight scale of
``blocks.2.6`` multiplied by FACTOR in the graph (docs/precision.md, "Tolerances, measured")::

    python3 benchmarks/int8_planted_scale.py DEPLOY_DIR FACTOR

Prints the layers that fail ``INT8_LAYER_TOLERANCE`` (with their SNR) and the lowest SNR of the
others.
"""
import sys, onnx, torch, numpy as np
from onnx import numpy_helper
from pathlib import Path
from centerpoint_deploy.config import load_config
from centerpoint_deploy.model import build_model
from centerpoint_deploy.verify.fake_quant import fake_quant_model
from centerpoint_deploy.verify.layerwise import int8_layer_checks
from centerpoint_deploy.verify.compare import INT8_LAYER_TOLERANCE
from centerpoint_deploy.variant import VariantSpec, build_detector
from centerpoint_deploy.data import open_dataset
from centerpoint_deploy.data.sample import default_sample_dir
d, factor = Path(sys.argv[1]), float(sys.argv[2])
cfg = load_config("demo")
model = build_model(cfg, checkpoint=Path(__file__).parents[1] / "centerpoint_deploy/assets/demo_centerpoint.pth")
graphs = [onnx.load(str(d / f)) for f in ("pts_voxel_encoder.onnx", "pts_backbone_neck_head.onnx")]
fq = fake_quant_model(model, graphs)
head = graphs[1]
producer = {o: n for n in head.graph.node for o in n.output}
conv = next(n for n in head.graph.node if n.name == "/pts_backbone/blocks.2/blocks.2.6/Conv")
name = producer[conv.input[1]].input[1]
init = next(i for i in head.graph.initializer if i.name == name)
init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(factor), name))
det = build_detector(VariantSpec.parse("pytorch"), cfg, model=fq)
ds = open_dataset(str(default_sample_dir()), class_names=cfg.class_names, sweeps_num=cfg.points.sweeps_num, load_dim=cfg.points.load_dim)
pts = torch.from_numpy(np.ascontiguousarray(ds[0].points[:, list(cfg.points.use_dim)], dtype=np.float32))
st = det.run_stages(pts)
checks = int8_layer_checks(fq, head, "head", {"spatial_features": st.spatial_features}, INT8_LAYER_TOLERANCE)
print(factor, [(c.module, round(c.comparison.snr_db, 1)) for c in checks if not c.passed], "min passing", min(c.comparison.snr_db for c in checks if c.passed))
