#!/usr/bin/env bash
# The gateway at a git revision (old) against the gateway in this work tree (new), measured in
# alternation like alternate.sh, so a slow spell of this shared box hits both alike:
#
#   bench/compare_revisions.sh [REV] [PAIRS]    # defaults: HEAD~1 12
#   OLD_ARGS=... NEW_ARGS=... MIN_RATIO=0.9 bench/compare_revisions.sh HEAD   # one revision, two setups
#
# OLD_ARGS / NEW_ARGS are extra `bundle serve` arguments for each side (e.g. NEW_ARGS="--drift" with
# REV=HEAD measures what drift monitoring costs); MIN_RATIO is the pass mark (default 0.95).
#
# Two steps: M1 single rows at c=16 (requests/s), then 1000-row batches at c=4 (rows/s; BATCH_MODEL,
# m1 or m2, default m1). Each step: a 2 s warm-up of each side, then PAIRS pairs of 3 s wrk runs in the
# order ABBA (old new, new old, ...); it prints every pair, its ratio new/old and each server's CPU a
# request and CPU use, then the median ratio, the median CPU ratio, each side's median p99 and wrk's
# errors (non-2xx answers, socket errors and timeouts), and what a side's payload log has dropped
# (when it has one). After each run the side is left until its CPU use stops (at most 5 s) and that
# CPU counts as the run's, so what a server leaves for later does not slow the other side's turn.
# See bench/README.md for how to read it.
#
# REV is checked out in a temporary `git worktree`; both sides run from this tree's .venv, the old one
# with PYTHONPATH=<that worktree>/src and the new one with PYTHONPATH=src (each side's `bundlegate` file
# is printed once and checked). So the old side uses today's installed packages, not REV's pins. The
# models, bundles (each side packs its own), keys and request bodies are made afresh in a temp work dir
# by bench/gateway.py's functions; no peer harness is needed. Both servers are up at once, pinned to
# CPU 1 and idle while the other is loaded; wrk runs on CPU 0; ports 18571/18572 (PORT_OLD, PORT_NEW)
# on 127.0.0.1. Every wrk run is bounded by `timeout`; the worktree, servers and work dir go on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:-HEAD~1}
pairs=${2:-12}
batch_model=${BATCH_MODEL:-m1}
min_ratio=${MIN_RATIO:-0.95} # what the median ratio must reach to call the new side as fast
declare -A extra=([old]=${OLD_ARGS:-} [new]=${NEW_ARGS:-})
py=$PWD/.venv/bin/python
old_hash=$(git rev-parse --verify "$rev^{commit}")
command -v wrk >/dev/null || { echo "wrk is missing (apt-get install -y wrk)" >&2; exit 1; }

work=$(mktemp -d)
declare -A pid=()
cleanup() {
  for p in "${pid[@]}"; do kill -- "-$p" 2>/dev/null || true; done # each server leads its own group
  wait 2>/dev/null || true
  git worktree remove --force "$work/old" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
git worktree add --quiet --detach "$work/old" "$old_hash"
declare -A src=([old]="$work/old/src" [new]="$PWD/src") port=([old]=${PORT_OLD:-18571} [new]=${PORT_NEW:-18572})

echo "old: $rev = $(git log -1 --format='%h %s' "$old_hash" | cut -c1-72)"
[ -n "${extra[old]}${extra[new]}" ] && echo "serve arguments: old '${extra[old]}', new '${extra[new]}'"
echo "new: work tree at $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo ' + uncommitted src changes')"
for side in old new; do # the interpreter and path each server gets: which bundlegate does it import?
  file=$(PYTHONPATH=${src[$side]} "$py" -c 'import bundlegate.cli as c; print(c.__file__)')
  echo "$side imports $file"
  [[ $file == "${src[$side]}"/* ]] || { echo "$side side does not import ${src[$side]}" >&2; exit 1; }
done

echo "preparing models, bundles, key and bodies (bench/gateway.py) ..."
key=$(PYTHONPATH=${src[new]} "$py" - "$work" m1 "$batch_model" <<'EOF'
import sys
from pathlib import Path

sys.path.insert(0, "bench")
import gateway

root, names = Path(sys.argv[1]), sorted(set(sys.argv[2:]))
samples = gateway.prepare_models(root)
gateway.pack_models(root, names)
gateway.bench_cases(root, samples, names)
print(gateway.create_key(root)[1])
EOF
)

# each side serves the bundles its own code packed: a change of the bundle format would refuse the
# other side's (the models and request bodies are shared)
mkdir -p "$work/old-root" && ln -s "$work/models" "$work/old-root/models"
PYTHONPATH=${src[old]} "$py" - "$work/old-root" m1 "$batch_model" <<'EOF'
import sys
from pathlib import Path

sys.path.insert(0, "bench")
import gateway

gateway.pack_models(Path(sys.argv[1]), sorted(set(sys.argv[2:])))
EOF
declare -A repo=([old]="$work/old-root/repo" [new]="$work/repo")

for side in old new; do
  PYTHONPATH=${src[$side]} setsid taskset -c 1 "$py" -m bundlegate.cli serve "${repo[$side]}" \
    --host 127.0.0.1 --port "${port[$side]}" --keys "$work/keys.json" ${extra[$side]} >"$work/$side.log" 2>&1 &
  pid[$side]=$!
done
for side in old new; do # ready within 60 s, and still ours (a server that lost its port has exited)
  for _ in $(seq 1 300); do
    kill -0 "${pid[$side]}" 2>/dev/null || break
    curl -sf -o /dev/null "http://127.0.0.1:${port[$side]}/readyz" && break
    sleep 0.2
  done
  curl -sf -o /dev/null "http://127.0.0.1:${port[$side]}/readyz" && kill -0 "${pid[$side]}" 2>/dev/null ||
    { echo "the $side server is not serving:" >&2; tail -n 5 "$work/$side.log" >&2; exit 1; }
done
for what in "m1 predict single" "$batch_model predict/batch batch"; do
  read -r model route kind <<<"$what"
  answers=()
  for side in old new; do
    answers+=("$(curl -s --max-time 10 -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
      --data-binary "@$work/run/$model-$kind.json" "http://127.0.0.1:${port[$side]}/v1/models/$model/$route")")
  done
  python3 -c '
import json, sys
old, new = ({k: v for k, v in json.loads(a or "{}").items() if k != "request_id"} for a in sys.argv[2:])
same = "the same" if old == new and "error" not in old else "DIFFERENT"
print(f"{sys.argv[1]} answers of old and new (request_id aside): {same}; old {json.dumps(old)[:70]}...")' \
    "$model $kind" "${answers[@]}"
done

cpu_ticks() { # utime + stime of every thread of every process of a server's session (its own
  # processes too, such as the payload log's writer)
  local p total=0 ticks
  for p in $(pgrep -s "$1"); do
    ticks=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}')
    total=$((total + ${ticks:-0}))
  done
  echo "$total"
}
payload_dropped() { # what a server's payload log has dropped so far (the counter is there, at 0,
  # whenever monitoring is on; nothing without monitoring)
  curl -s --max-time 5 -H "Authorization: Bearer $key" "http://127.0.0.1:${port[$1]}/metrics" |
    awk '/^bundlegate_payload_log_dropped_total/ {printf "%d", $2}'
}

settled_ticks() { # a server's CPU ticks once it is idle again (work it left for later, such as
  # payload log lines, done in its own turn and not in the other side's); at most 5 s
  local ticks last=-1
  for _ in $(seq 1 25); do
    ticks=$(cpu_ticks "$1")
    [ "$ticks" = "$last" ] && break
    last=$ticks
    sleep 0.2
  done
  echo "$ticks"
}

run() { # side path body connections seconds rows -> "per_s p99_us errors cpu_us_a_request busy_%"
  local before out
  before=$(cpu_ticks "${pid[$1]}")
  out=$(BODY_FILE="$3" EXTRA_HEADERS="Authorization: Bearer $key" \
    timeout 60 taskset -c 0 wrk -t1 "-c$4" "-d${5}s" -s bench/wrk_report.lua "http://127.0.0.1:${port[$1]}$2" |
    sed -n 's/^WRKJSON //p' || true)
  python3 -c '
import json, os, sys
rows, before, after, text = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if not text:  # wrk failed or timed out
    print(0, 0, "failed", 0, 0)
    raise SystemExit
r = json.loads(text)
answered = max(r["requests"] - r["err_status"], 1)
errors = sum(r[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
seconds, cpu_s = r["duration_us"] / 1e6, (after - before) / os.sysconf("SC_CLK_TCK")
print(round(answered / seconds * rows), r["p99_us"], errors, round(cpu_s * 1e6 / answered), round(cpu_s / seconds * 100))
' "$6" "$before" "$(settled_ticks "${pid[$1]}")" "$out"
}

step() { # title path body connections rows
  run old "${@:2:3}" 2 "$5" >/dev/null
  run new "${@:2:3}" 2 "$5" >/dev/null
  for i in $(seq 1 "$pairs"); do
    order="old new"
    [ $((i % 2)) = 0 ] && order="new old"
    for side in $order; do echo "$i $side $(run "$side" "${@:2:3}" 3 "$5")"; done
  done | python3 -c '
import statistics, sys
title, min_ratio = sys.argv[1], float(sys.argv[2])
print(f"{title} (in brackets: CPU time a request and CPU use of the server processes)", flush=True)
rate, cpu, busy, ratios, cpu_ratios, failed = {}, {"old": 0, "new": 0}, {}, [], [], 0
p99, errors = {"old": [], "new": []}, {"old": 0, "new": 0}
for line in sys.stdin:
    i, side, per_s, p99_us, err, cpu_us, busy_pct = line.split()
    rate[side], cpu[side], busy[side] = int(per_s), int(cpu_us), int(busy_pct)
    p99[side].append(int(p99_us) / 1000)
    failed += err == "failed"
    errors[side] += 0 if err == "failed" else int(err)
    if len(rate) == 2:  # a pair is complete
        first, old, new = ("old" if side == "new" else "new"), rate.pop("old"), rate.pop("new")
        ratio = new / old if old and new else float("nan")
        ratios += [ratio] if old and new else []
        co, cn = cpu.values()
        cpu_ratios += [cn / co] if co and cn else []
        bo, bn = busy["old"], busy["new"]
        print(f"  pair {i:>2} ({first} first)  old {old:>9,} ({co:>4} us, {bo:>3}%)  new {new:>9,} "
              f"({cn:>4} us, {bn:>3}%)  new/old {ratio:.3f}", flush=True)
med = statistics.median(ratios) if ratios else float("nan")
verdict = "pass" if med >= min_ratio else "FAIL"
lo, hi = min(ratios, default=0), max(ratios, default=0)
print(f"  median new/old {med:.3f} over {len(ratios)} pairs (min {lo:.3f}, max {hi:.3f}; >= {min_ratio}: {verdict})")
(p99_old, p99_new), (e_old, e_new) = (statistics.median(p99[s]) for s in p99), errors.values()
cpu_med = statistics.median(cpu_ratios) if cpu_ratios else float("nan")
print(f"  CPU a request new/old, median {cpu_med:.3f}; p99 median old {p99_old:.2f} ms, new {p99_new:.2f} ms")
print(f"  errors old {e_old}, new {e_new}; wrk runs failed {failed}")
' "$1" "$min_ratio"
  for side in old new; do
    dropped=$(payload_dropped "$side")
    [ -z "$dropped" ] || echo "  payload log of $side: $dropped sampled requests dropped so far"
  done
}

step "m1 single rows at c=16, requests/s" /v1/models/m1/predict "$work/run/m1-single.json" 16 1
step "$batch_model 1000-row batches at c=4, rows/s" "/v1/models/$batch_model/predict/batch" \
  "$work/run/$batch_model-batch.json" 4 1000
echo "$pairs ABBA pairs of 3 s wrk runs per step; servers on CPU 1, wrk on CPU 0"
