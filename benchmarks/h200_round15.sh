#!/usr/bin/env bash
# Round 15 on one H200 (PyTorch only), in parts that each fit a 10-minute device call:
#   bash benchmarks/h200_round15.sh neck OUT   CUDA tests of the neck and head kernels; the neck's patch matmul
#                                              kernel against a matmul and a copy (both presets); j6gen2_base side by
#                                              side with eager fp32; the compiled graph's kernel profile
#   bash benchmarks/h200_round15.sh amp OUT    j6gen2_base_amp side by side with eager fp32; its kernel profile
#   bash benchmarks/h200_round15.sh code OUT   what torch.compile makes of j6gen2's network (its launch sequence)
#   bash benchmarks/h200_round15.sh loop OUT   the loader's CUDA tests (merge graphs); the steady 1-sweep evaluate loop,
#                                              compiled
#   bash benchmarks/h200_round15.sh relu OUT   j6gen2_base: eager fp32, FN and FN with fuse_relu side by side
#   bash benchmarks/h200_round15.sh final OUT  the loader's CUDA tests; j6gen2_base_amp side by side with FNR; the
#                                              steady 1-sweep loop; FNR's boxes against plain fp32 (demo model)
#   bash benchmarks/h200_round15.sh merge OUT  the loader's CUDA tests; the steady 1-sweep loop (after the merge graphs'
#                                              column index was kept alive with them)
# Writes flat files into OUT.
source "$(dirname "$0")/h200_common.sh" "$@"
# profile CONFIG FILE: the compiled graph's kernels (its compile cached by side_by_side)
profile() {
  timeout 150 python3 benchmarks/profile_pipeline.py --config "$1" --variant "$FN" --top 30 --out "$OUT/$2" > "$W/prof.log" 2>&1
  sed -n 3p "$OUT/$2"; grep '^| `' "$OUT/$2" | head -8 | cut -c1-100
}
case "$part" in
neck)
  timeout 120 python3 -m pytest -q -p no:cacheprovider -m cuda tests/model/test_fused_neck.py tests/model/test_fused_head.py \
      > "$OUT/cuda_tests_model.txt" 2>&1; tail -3 "$OUT/cuda_tests_model.txt"
  for c in j6gen2_base j6gen2_base_amp; do
    timeout 60 python3 benchmarks/neck_kernel.py --config $c > "$OUT/neck_kernel_$c.md" 2>&1; cat "$OUT/neck_kernel_$c.md"
  done
  side_by_side j6gen2_base j6gen2_side_by_side.md
  profile j6gen2_base profile_compiled.md
  ;;
amp)
  side_by_side j6gen2_base_amp j6gen2_amp_side_by_side.md
  profile j6gen2_base_amp profile_amp_compiled.md
  ;;
loop)
  timeout 60 python3 -m pytest -q -p no:cacheprovider -m cuda tests/data > "$OUT/cuda_tests_data.txt" 2>&1
  tail -1 "$OUT/cuda_tests_data.txt"
  loop 200 80 1 "$GC" evaluate_throughput_80_compiled_steady.md
  ;;
code)
  timeout 200 python3 benchmarks/network_code.py --config j6gen2_base --out "$OUT/network_code_j6gen2_base.txt" 2>&1 | tail -25
  ;;
relu)
  side_by_side j6gen2_base j6gen2_relu_side_by_side.md "$FN" "$FNR"
  ;;
final)
  timeout 60 python3 -m pytest -q -p no:cacheprovider -m cuda tests/data > "$OUT/cuda_tests_data.txt" 2>&1
  tail -1 "$OUT/cuda_tests_data.txt"
  side_by_side j6gen2_base_amp j6gen2_amp_side_by_side.md "$FNR"
  loop 150 80 1 "$GC" evaluate_throughput_80_compiled_steady_final.md
  timeout 100 python3 benchmarks/verify_fast_path.py --variant "$FNR" --config demo --device cuda --frames 10 \
      --checkpoint centerpoint_deploy/assets/demo_centerpoint.pth > "$OUT/verify_fast_path.md" 2>&1
  tail -4 "$OUT/verify_fast_path.md"
  ;;
merge)
  timeout 60 python3 -m pytest -q -p no:cacheprovider -m cuda tests/data > "$OUT/cuda_tests_data.txt" 2>&1
  tail -1 "$OUT/cuda_tests_data.txt"
  loop 150 80 1 "$GC" evaluate_throughput_80_compiled_steady_merge.md
  ;;
esac
