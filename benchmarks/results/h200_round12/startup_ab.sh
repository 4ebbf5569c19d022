set -u
# A one-off A/B of the evaluate CLI's start-up: this tree against round 11's code, unpacked beside it with
#   mkdir _old && git archive 42816b7 centerpoint_deploy | tar -x -C _old
# then run from the repository root on the device: bash benchmarks/results/h200_round12/startup_ab.sh
python3 -m centerpoint_deploy synth /tmp/sd --scenes 1 --frames 8 --beams 32 --columns 900 > /dev/null 2>&1
for round in 1 2 3; do
  for code in "$PWD" "$PWD/_old"; do
    rm -rf /tmp/ev
    (cd "$code" && PYTHONPATH="$code" python3 -m centerpoint_deploy evaluate --dataset /tmp/sd --config demo \
       --checkpoint "$OLDPWD/centerpoint_deploy/assets/demo_centerpoint.pth" --device cuda --out /tmp/ev --no-plots \
       --no-cache --max-frames 4 > /tmp/ev.log 2>&1)
    python3 -c "import json,sys; print(sys.argv[1], json.load(open('/tmp/ev/comparison.json'))['throughput']['startup_s'])" "$(basename $code)" || tail -3 /tmp/ev.log
  done
done
