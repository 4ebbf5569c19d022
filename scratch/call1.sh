set -u
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch;print(torch.__version__, torch.backends.cudnn.version())"
B=pytorch:fp16+channels_last+fuse_batchnorm
timeout 200 python3 -m pytest -q -x -m cuda tests/benchmark tests/preprocess tests/postprocess tests/test_detector.py -p no:cacheprovider 2>&1 | tail -4
for v in "$B+fuse_relu+pipeline_graph" "$B+fuse_relu+cudnn_benchmark+pipeline_graph"; do
  timeout 150 python3 -m centerpoint_deploy benchmark -c j6gen2_base --device cuda --warmup 20 -n 50 -v "$v" --no-scaling -o $OUT/b_${v//[:+]/_} 2>&1 | tail -3
  cat $OUT/b_${v//[:+]/_}/benchmark.md | grep -A 12 "^| variant"
done
timeout 120 python3 benchmarks/profile_pipeline.py --config j6gen2_base --variant "$B+fuse_relu+pipeline_graph" --top 40 --out $OUT/prof_graph.md > /dev/null 2>&1; cat $OUT/prof_graph.md
