set -u
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
