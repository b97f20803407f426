#!/usr/bin/env bash
# The gateway against its bound, measured in alternation, so a slow spell of this shared box hits both
# alike (the ratio of the medians is the controlled version of the one RESULTS.md computes from steps
# run minutes apart):
#
#   bench/alternate.sh [MODEL] [CONNS] [PAIRS]   # single rows at CONNS vs the harness's bare starlette
#                                                # app, both serving on CPU 1 (defaults: m1 16 5)
#   bench/alternate.sh MODEL batch [PAIRS]       # 1000-row batches at c=4 vs raw onnxruntime
#                                                # (the harness's ort_raw.py, 1 thread, on CPU 1)
#
# Needs a `make bench` work dir (BENCH_ROOT: bundles, bodies), PEERS_ROOT's venvs and models and the
# harness (PEERS_HARNESS). wrk runs for 3 s on CPU 0; ports 18561/18562 on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-m1}
conns=${2:-16}
pairs=${3:-5}
root=${BENCH_ROOT:-${TMPDIR:-/tmp}/bundlegate-bench}
peers=${PEERS_ROOT:-${TMPDIR:-/tmp}/peers}
harness=${PEERS_HARNESS:-../shared/bench/peers}
work=$(mktemp -d)
key=$(.venv/bin/bundle keys create alternate --models '*' --file "$work/keys.json" | tail -n 1)

taskset -c 1 .venv/bin/bundle serve "$root/repo" --host 127.0.0.1 --port 18561 --keys "$work/keys.json" \
  >"$work/gateway.log" 2>&1 &
gw=$!
bare=$gw
if [ "$conns" != batch ]; then
  (cd "$harness/apps" && exec taskset -c 1 "$peers/venv-bare/bin/uvicorn" bare_app:app --host 127.0.0.1 \
    --port 18562 --no-access-log --log-level warning) >"$work/bare.log" 2>&1 &
  bare=$!
fi
trap 'kill $gw $bare 2>/dev/null; wait $gw $bare 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 150); do
  curl -sf -o /dev/null http://127.0.0.1:18561/readyz &&
    { [ "$conns" = batch ] || curl -sf -o /dev/null http://127.0.0.1:18562/health; } && break
  sleep 0.2
done

run() {  # port path body connections seconds rows -> "per_s p99_us errors"
  BODY_FILE="$3" EXTRA_HEADERS="Authorization: Bearer $key" \
    timeout 60 taskset -c 0 wrk -t1 "-c$4" "-d${5}s" -s bench/wrk_report.lua "http://127.0.0.1:$1$2" |
    sed -n 's/^WRKJSON //p' | python3 -c '
import json, sys
r = json.load(sys.stdin)
print(round((r["requests"] - r["err_status"]) / (r["duration_us"] / 1e6) * int(sys.argv[1])), r["p99_us"], r["err_status"])' "$6"
}
ort() {  # seconds -> "rows_per_s p99_us 0"
  taskset -c 1 "$peers/venv-tools/bin/python" "$harness/ort_raw.py" "$peers/models/$model.onnx" \
    "$peers/models/samples.json" "$model" "$1" | python3 -c '
import json, sys
r = json.load(sys.stdin)["batch"]
print(round(r["rows_per_s"]), round(r["p99_ms"] * 1000), 0)'
}
if [ "$conns" = batch ]; then
  names=(gateway onnxruntime)
  first() { run 18561 "/v1/models/$model/predict/batch" "$root/run/$model-batch.json" 4 "$1" 1000; }
  second() { ort "$1"; }
  what="1000-row batches (gateway c=4) vs raw onnxruntime, rows/s"
else
  names=(gateway bare)
  first() { run 18561 "/v1/models/$model/predict" "$root/run/$model-single.json" "$conns" "$1" 1; }
  second() { run 18562 /predict "$root/run/$model-single.json" "$conns" "$1" 1; }
  what="single rows at c=$conns, requests/s"
fi
first 2 >/dev/null
second 2 >/dev/null
for _ in $(seq 1 "$pairs"); do
  echo "${names[0]} $(first 3)"
  echo "${names[1]} $(second 3)"
done | python3 -c '
import statistics, sys
a, b = sys.argv[1:3]
rows = [line.split() for line in sys.stdin]
med = {}
for name in (a, b):
    rate = [int(r[1]) for r in rows if r[0] == name]
    p99 = [int(r[2]) / 1000 for r in rows if r[0] == name]
    errors = sum(int(r[3]) for r in rows if r[0] == name)
    med[name] = statistics.median(rate), statistics.median(p99)
    print(f"{name:12} {rate} median {med[name][0]:,.0f}, p99 median {med[name][1]:.2f} ms, errors {errors}")
p99 = f", {med[a][1] / med[b][1]:.2f}x p99" if b == "bare" else ""  # a queue at c=4 vs one call: no p99 ratio
print(f"{a} / {b}: {med[a][0] / med[b][0]:.2f}x rate{p99}")' "${names[@]}"
echo "model $model, $what, $pairs alternating pairs of 3 s runs"
