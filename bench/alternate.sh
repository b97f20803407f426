#!/usr/bin/env bash
# Gateway vs the peer harness's bare starlette app, measured in alternation: both servers run at once
# on CPU 1, and 3-second wrk runs (CPU 0) take turns between them, so a slow spell of this shared box
# hits both alike. The ratio of the medians is the controlled version of RESULTS.md's c=16 ratio.
#
#   bench/alternate.sh [MODEL] [CONNS] [PAIRS]      # defaults: m1 16 5; needs a `make bench` work dir
#
# Uses BENCH_ROOT (bundles, bodies) from a previous `bench/run.py`, PEERS_ROOT's bare venv and the
# harness's apps (PEERS_HARNESS). Ports 18561/18562 on 127.0.0.1.
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
(cd "$harness/apps" && exec taskset -c 1 "$peers/venv-bare/bin/uvicorn" bare_app:app --host 127.0.0.1 \
  --port 18562 --no-access-log --log-level warning) >"$work/bare.log" 2>&1 &
bare=$!
trap 'kill $gw $bare 2>/dev/null; wait $gw $bare 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 150); do
  curl -sf -o /dev/null http://127.0.0.1:18561/readyz && curl -sf -o /dev/null http://127.0.0.1:18562/health && break
  sleep 0.2
done

run() {  # port path seconds -> "rps p99_us errors"
  BODY_FILE="$root/run/$model-single.json" EXTRA_HEADERS="Authorization: Bearer $key" \
    timeout 60 taskset -c 0 wrk -t1 "-c$conns" "-d${3}s" -s bench/wrk_report.lua "http://127.0.0.1:$1$2" |
    sed -n 's/^WRKJSON //p' | python3 -c '
import json, sys
r = json.load(sys.stdin)
print(round((r["requests"] - r["err_status"]) / (r["duration_us"] / 1e6)), r["p99_us"], r["err_status"])'
}
run 18561 "/v1/models/$model/predict" 2 >/dev/null
run 18562 /predict 2 >/dev/null
for _ in $(seq 1 "$pairs"); do
  echo "gateway $(run 18561 "/v1/models/$model/predict" 3)"
  echo "bare $(run 18562 /predict 3)"
done | python3 -c '
import statistics, sys
rows = [line.split() for line in sys.stdin]
med = {}
for name in ("gateway", "bare"):
    rps = [int(r[1]) for r in rows if r[0] == name]
    p99 = [int(r[2]) / 1000 for r in rows if r[0] == name]
    med[name] = statistics.median(rps), statistics.median(p99)
    print(f"{name:8} rps {rps} median {med[name][0]:,.0f}, p99 median {med[name][1]:.2f} ms")
print(f"gateway / bare: {med['"'"'gateway'"'"'][0] / med['"'"'bare'"'"'][0]:.2f}x rps, "
      f"{med['"'"'gateway'"'"'][1] / med['"'"'bare'"'"'][1]:.2f}x p99")'
echo "model $model, c=$conns, $pairs alternating pairs of 3 s runs"
