"""``make bench``: load-test the gateway next to the peers and write bench/RESULTS.md (see bench/README.md).

    .venv/bin/python bench/run.py                          # bounds (bare starlette, raw onnxruntime), 1 round
    .venv/bin/python bench/run.py --peers all --rounds 3   # every peer too (~13 min a round more)
    .venv/bin/python bench/run.py --peers bare-starlette,mlserver,onnxruntime-raw --duration 5

Server pinned to CPU 1 (``taskset``), wrk and this driver on CPU 0, everything on 127.0.0.1. Per round:
the gateway (M1, M2: single rows at c=1/8/16/64, 1000-row batches at c=4), the chosen peers through the
shared peer harness (when its virtualenvs exist), the gateway against its bounds taking turns (bare
starlette and raw onnxruntime, ``run_bounds``), the gateway with batching off (c=1), ``--workers 1``
vs ``--workers 2`` unpinned (with ``--workers 2`` and two separate single-worker gateways also under two
wrk processes, see ``PAIRED``), and the example bundles; then an optional py-spy profile. The
comparisons between ways of starting the gateway (batching on vs off, 1 vs 2 workers) run all their
servers at once and take turns (``run_pair``). Every number in RESULTS.md is a median over rounds; raw results
go to ``BENCH_ROOT/results.json``.

Environment: ``BENCH_ROOT`` (work dir, default ``<tmp>/bundlegate-bench``), ``PEERS_ROOT`` (the peer
harness's venvs and models, default ``<tmp>/peers``), ``PEERS_HARNESS`` (the harness folder, default
``../shared/bench/peers`` next to this repository).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from types import ModuleType
from typing import Any

sys.dont_write_bytecode = True
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gateway  # noqa: E402
import loadgen  # noqa: E402
import profiling  # noqa: E402
import report  # noqa: E402
from gateway import ModelCase  # noqa: E402
from loadgen import Failed  # noqa: E402

REPO = HERE.parent
TMP = Path(tempfile.gettempdir())
BENCH_ROOT = Path(os.environ.get("BENCH_ROOT", TMP / "bundlegate-bench"))
PEERS_ROOT = Path(os.environ.get("PEERS_ROOT", TMP / "peers"))
HARNESS = Path(os.environ.get("PEERS_HARNESS", REPO.parent / "shared" / "bench" / "peers"))
BOUNDS = ("bare-starlette", "onnxruntime-raw")
SINGLE_CONNS, BATCH_CONNS = (1, 8, 16, 64), 4
WARMUP_S = 3
BATCHING_OFF = ["--batch-max-rows", "1", "--batch-max-delay-ms", "0"]
# Two ways of starting the gateway that are compared with each other are measured taking turns, both
# servers up, in PAIRS short steps per load step (order ABBA...): on this box a step run a minute later
# can be 20-30% slower, which a single step each would read as a difference between the servers.
# The --workers comparison (the target: one wrk thread against each) takes two more sides, both loaded
# by two wrk processes with half the connections each: two separate single-worker gateways (what two
# serving processes get done on this box's two CPUs) and ``--workers 2`` loaded the same way (whether
# one wrk thread, sharing the two CPUs with two busy workers, is what holds them back).
PAIRED: tuple[tuple[str, ...], ...] = (
    ("gateway-batching-on", "gateway-batching-off"),
    ("gateway-w1-unpinned", "gateway-w2-unpinned", "gateway-w2-two-wrk-unpinned", "gateway-two-w1-unpinned"),
)
PAIRS = 4


@dataclass
class Variant:
    """One way of starting the gateway and what to measure on it."""

    name: str
    extra: list[str]
    steps: tuple[tuple[str, int], ...]  # ("single", conns) / ("batch", conns)
    pinned: bool = True
    note: str = ""
    processes: int = 1  # separate gateways started
    loaders: int = 1  # wrk processes a step runs at once, a share of the connections each (one a gateway)

    @property
    def server_cpus(self) -> str:
        return loadgen.SERVER_CPU if self.pinned else loadgen.ALL_CPUS

    @property
    def wrk_cpus(self) -> str:
        return loadgen.LOAD_CPU if self.pinned else loadgen.ALL_CPUS


FULL = (*(("single", c) for c in SINGLE_CONNS), ("batch", BATCH_CONNS), ("binary", BATCH_CONNS))
VARIANTS = {
    "gateway": Variant("gateway", [], FULL, note="defaults: adaptive batching on, access log on, 1 worker"),
    "gateway-batching-on": Variant(
        "gateway-batching-on",
        [],
        (("single", 1),),
        note="defaults (batching on), measured taking turns with batching off",
    ),
    "gateway-batching-off": Variant(
        "gateway-batching-off",
        BATCHING_OFF,
        (("single", 1),),
        note="--batch-max-rows 1 --batch-max-delay-ms 0: every request is its own onnxruntime call",
    ),
    "gateway-w1-unpinned": Variant(
        "gateway-w1-unpinned",
        ["--workers", "1"],
        (("single", 16), ("single", 64)),
        pinned=False,
        note="--workers 1, server and wrk not pinned",
    ),
    "gateway-w2-unpinned": Variant(
        "gateway-w2-unpinned",
        ["--workers", "2"],
        (("single", 16), ("single", 64)),
        pinned=False,
        note="--workers 2, server and wrk not pinned",
    ),
    "gateway-w2-two-wrk-unpinned": Variant(
        "gateway-w2-two-wrk-unpinned",
        ["--workers", "2"],
        (("single", 16), ("single", 64)),
        pinned=False,
        note="--workers 2 under two wrk processes at once, half the connections each; nothing pinned",
        loaders=2,
    ),
    "gateway-two-w1-unpinned": Variant(
        "gateway-two-w1-unpinned",
        ["--workers", "1"],
        (("single", 16), ("single", 64)),
        pinned=False,
        note="two separate --workers 1 gateways, each under its own wrk with half the connections, at once; "
        "nothing pinned",
        processes=2,
        loaders=2,
    ),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------- the gateway


def verify(case: ModelCase, base: str, headers: dict[str, str]) -> dict[str, Any]:
    """The fixed row must get sklearn's class; the batch must agree on ``min_agreement`` of rows."""
    out: dict[str, Any] = {"ok": False}
    try:
        st, resp = loadgen.post(base + case.single_path, case.single_request, headers)
        if st != 200:
            return {**out, "reason": f"single-row request -> HTTP {st}: {str(resp)[:300]}"}
        pred = resp["prediction"]
        out["single_pred"] = pred
        if case.expected is not None and int(pred) != case.expected:
            return {**out, "reason": f"single row predicted {pred}, sklearn says {case.expected}"}
        st, resp = loadgen.post(base + case.batch_path, case.batch_request, headers)
        if st != 200:
            return {**out, "reason": f"batch request -> HTTP {st}: {str(resp)[:300]}"}
        preds = resp["predictions"]
        if len(preds) != case.batch_rows:
            return {**out, "reason": f"{len(preds)} predictions for {case.batch_rows} rows"}
        if case.batch_expected is not None:
            agree = sum(int(a) == b for a, b in zip(preds, case.batch_expected, strict=True)) / len(preds)
            out["batch_agreement"] = agree
            if agree < case.min_agreement:
                return {**out, "reason": f"batch agreement with sklearn {agree:.4f}"}
    except (OSError, ValueError, KeyError, TypeError) as e:
        return {**out, "reason": f"{type(e).__name__}: {e}"}
    out["ok"] = True
    return out


def binary_request_headers(case: ModelCase, headers: dict[str, str]) -> dict[str, str]:
    return {
        **headers,
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(case.binary_header_length),
    }


def verify_binary(case: ModelCase, base: str, headers: dict[str, str]) -> dict[str, Any]:
    """The binary batch must get the same labels as the JSON batch's check (``batch_expected``)."""
    assert case.binary_body is not None
    req = urllib.request.Request(base + case.binary_path, case.binary_body.read_bytes(), headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            outputs = {o["name"]: o for o in json.loads(r.read())["outputs"]}
    except (OSError, ValueError, KeyError, TypeError) as e:
        return {"ok": False, "reason": f"{type(e).__name__}: {str(e)[:300]}"}
    labels = outputs.get("label", {}).get("data", [])
    if len(labels) != case.batch_rows:
        return {"ok": False, "reason": f"{len(labels)} labels for {case.batch_rows} rows"}
    if case.batch_expected is not None:
        agree = sum(int(a) == b for a, b in zip(labels, case.batch_expected, strict=True)) / len(labels)
        if agree < case.min_agreement:
            return {"ok": False, "reason": f"agreement with sklearn {agree:.4f}"}
        return {"ok": True, "batch_agreement": agree}
    return {"ok": True}


def wait_answering(url: str, body: Any, headers: dict[str, str], timeout_s: float = 60) -> None:
    """Until 20 requests in a row answer 200 (a 503 while a worker is still loading is retried)."""
    deadline = time.time() + timeout_s
    streak = 0
    while streak < 20:
        if time.time() > deadline:
            raise Failed(f"{url} did not answer 200 steadily within {timeout_s:.0f} s")
        status, _ = loadgen.post(url, body, headers)
        streak = streak + 1 if status == 200 else 0
        if status != 200:
            time.sleep(0.2)


@dataclass
class Server:
    """A started gateway: where it answers, how wrk reaches it, and one result per case."""

    variant: Variant
    proc: subprocess.Popen[bytes]
    port: int
    base: str
    log_path: Path
    results: list[dict[str, Any]]


def start_gateway(
    variant: Variant, repo: Path, cases: list[ModelCase], keys: Path, key: str, tag: str
) -> Server:
    """Start the gateway for ``variant`` (not yet ready: see ``ready``)."""
    port = loadgen.free_port()
    cmd = gateway.serve_command(repo, port, keys, variant.extra)
    shown = " ".join(["taskset", "-c", variant.server_cpus, "bundle", *cmd[len(gateway.bundle_cli()) :]])
    results = [
        {"target": variant.name, "model": c.name, "cmd": shown, "note": variant.note, "status": "error"}
        for c in cases
    ]
    log_path = BENCH_ROOT / "logs" / f"{variant.name}-{tag}.log"
    proc = loadgen.start(cmd, variant.server_cpus, log_path, {})
    return Server(variant, proc, port, f"http://127.0.0.1:{port}", log_path, results)


def ready(server: Server, cases: list[ModelCase], headers: dict[str, str], t0: float) -> None:
    """Wait until every case answers (with --workers N each worker loads on its own: every one must)."""
    loadgen.wait_ready(server.proc, server.base + "/readyz")
    for case in cases:
        wait_answering(server.base + case.single_path, case.single_request, headers)
    rss_idle, _ = loadgen.memory_mib(loadgen.tree(server.proc.pid))
    for res in server.results:
        res.update(startup_s=round(time.time() - t0, 1), rss_idle_mib=rss_idle)


def finish(server: Server) -> list[dict[str, Any]]:
    """Record memory, stop the server, attach its log's tail to results that failed."""
    for res in server.results:
        if res["status"] == "ok":
            res["rss_mib"], res["pss_mib"] = loadgen.memory_mib(loadgen.tree(server.proc.pid))
            res["processes"] = len(loadgen.tree(server.proc.pid))
    loadgen.stop(server.proc, server.port)
    for res in server.results:
        if res["status"] != "ok":
            res["log_tail"] = server.log_path.read_text(errors="replace")[-1500:]
    return server.results


def run_gateway(
    variant: Variant, repo: Path, cases: list[ModelCase], keys: Path, key: str, seconds: float, tag: str
) -> list[dict[str, Any]]:
    """Start the gateway once for ``variant``, measure every case on it, stop it; one result per case."""
    headers = {"Authorization": f"Bearer {key}"}
    t0 = time.time()
    server = start_gateway(variant, repo, cases, keys, key, tag)
    try:
        ready(server, cases, headers, t0)
        for case, res in zip(cases, server.results, strict=True):
            try:
                measure(case, res, variant, server.base, headers, seconds, server.proc.pid)
            except Failed as e:
                res["reason"] = str(e)
    except Failed as e:
        for res in server.results:
            res["reason"] = str(e)
    finally:
        finish(server)
    return server.results


def run_pair(
    names: tuple[str, ...], repo: Path, cases: list[ModelCase], keys: Path, key: str, seconds: float, tag: str
) -> list[dict[str, Any]]:
    """Two or more variants with the same steps, all servers up, each step measured on them taking
    turns: ``PAIRS`` short runs each in the order ABBA... (ABCDDCBA... for four), so a slow spell of the
    box hits them alike. A step's figures are the medians of its turns; ``turns`` keeps each turn (pair i = turn
    i of each). A variant of ``processes`` > 1 is that many gateways, loaded at once in its turn
    (``split_turn``); its results are its first gateway's records, with the memory of all."""
    variants = [VARIANTS[n] for n in names]
    if any(v.steps != variants[0].steps or v.pinned != variants[0].pinned for v in variants):
        raise ValueError(f"{names}: a pair compares servers under the same load")
    headers = {"Authorization": f"Bearer {key}"}
    turn_s = turn_seconds(seconds)
    t0 = time.time()
    sides = [
        [start_gateway(v, repo, cases, keys, key, f"{tag}-{j}" if j else tag) for j in range(v.processes)]
        for v in variants
    ]
    servers = [s for side in sides for s in side]
    try:
        for server in servers:
            ready(server, cases, headers, t0)
        for i, case in enumerate(cases):
            for server in servers:
                check = verify(case, server.base, headers)
                server.results[i]["verify"] = check
                if not check["ok"]:
                    server.results[i].update(status="wrong-answers", reason=check["reason"])
            if any(s.results[i]["status"] == "wrong-answers" for s in servers):
                continue
            for server in servers:  # warm-up, not recorded
                v = server.variant
                loadgen.wrk(
                    server.base + case.single_path, case.single_body, 16, WARMUP_S, 1, headers, v.wrk_cpus
                )
            for kind, conns in variants[0].steps:
                turns = take_turns(sides, case, kind, conns, headers, turn_s)
                for side, measured in zip(sides, turns, strict=True):
                    side[0].results[i].setdefault(kind, {})[f"c{conns}"] = combine(measured)
            for server in servers:
                server.results[i]["status"] = "ok"
    except Failed as e:
        for server in servers:
            for res in server.results:
                if res["status"] != "ok":
                    res["reason"] = str(e)
    finally:
        for server in servers:
            finish(server)
        for side in sides:
            for i, res in enumerate(side[0].results):
                for other in side[1:]:
                    for k in ("rss_mib", "pss_mib", "processes"):
                        if k in res and k in other.results[i]:
                            res[k] += other.results[i][k]
    return [res for side in sides for res in side[0].results]


def run_bounds(
    repo: Path,
    cases: list[ModelCase],
    keys: Path,
    key: str,
    seconds: float,
    tag: str,
    peers: ModuleType,
    samples: dict[str, Any],
) -> list[dict[str, Any]]:
    """The gateway against its bounds, taking turns like ``run_pair``: single rows at c=16 against the
    harness's bare starlette app (both servers up, both on CPU 1), and 1000-row batches at c=4 against
    raw onnxruntime (``ort_turn.py``, the harness's own timing, on CPU 1). The steps of the harness
    and of ``run_gateway`` run minutes apart, and on this box the ratio of two such steps moved between
    0.51x and 1.01x from round to round of one run with no change to either side; turns taken seconds
    apart see the same spell. One result per case, target ``bounds``."""
    headers = {"Authorization": f"Bearer {key}"}
    turn_s = turn_seconds(seconds)
    results: list[dict[str, Any]] = [{"target": "bounds", "model": c.name, "status": "error"} for c in cases]
    bare = next(t for t in peers.TARGETS if t.name == BOUNDS[0])
    bare_port = loadgen.free_port()
    uvicorn = str(PEERS_ROOT / f"venv-{bare.venv}" / "bin" / "uvicorn")  # the harness runs it from apps/
    bare_cmd = [uvicorn, "--app-dir", str(HARNESS / "apps")]
    bare_cmd += [c.replace("{port}", str(bare_port)) for c in bare.cmd[1:]]
    t0 = time.time()
    server = start_gateway(VARIANTS["gateway"], repo, cases, keys, key, f"bounds-{tag}")
    bare_log = BENCH_ROOT / "logs" / f"bare-starlette-bounds-{tag}.log"
    bare_proc = loadgen.start(bare_cmd, loadgen.SERVER_CPU, bare_log, {})
    bare_base = f"http://127.0.0.1:{bare_port}"
    try:
        ready(server, cases, headers, t0)
        loadgen.wait_ready(bare_proc, bare_base + bare.ready)
        for i, case in enumerate(cases):
            res = results[i]
            res["verify"] = verify(case, server.base, headers)
            if not res["verify"]["ok"]:
                res.update(status="wrong-answers", reason=res["verify"]["reason"])
                continue
            bare_body = gateway.write_body(
                BENCH_ROOT / "run" / f"bare-{case.name}-single.json", bare.body([samples[case.name]["row"]])
            )
            gw_single = (server.base + case.single_path, case.single_body, 1)
            bare_single = (bare_base + bare.path, bare_body, 1)
            gw_batch = (server.base + case.batch_path, case.batch_body, case.batch_rows)
            bare_batch_body = gateway.write_body(
                BENCH_ROOT / "run" / f"bare-{case.name}-batch.json", bare.body(samples[case.name]["batch"])
            )
            bare_batch = (bare_base + bare.path, bare_batch_body, case.batch_rows)
            for url, body, rows in (gw_single, bare_single, gw_batch, bare_batch):  # warm-up, not recorded
                loadgen.wrk(url, body, 16 if rows == 1 else BATCH_CONNS, WARMUP_S, rows, headers)
            single = alternate(
                lambda u=gw_single: _wrk_turn(*u, 16, turn_s, headers, server.proc.pid),
                lambda u=bare_single: _wrk_turn(*u, 16, turn_s, headers, bare_proc.pid),
            )
            batch = alternate(
                lambda u=gw_batch: _wrk_turn(*u, BATCH_CONNS, turn_s, headers, server.proc.pid),
                lambda m=case.name: ort_turn(m, turn_s),
                lambda u=bare_batch: _wrk_turn(*u, BATCH_CONNS, turn_s, headers, bare_proc.pid),
            )
            res["single"] = {"c16": {"gateway": combine(single[0]), "bound": combine(single[1])}}
            res["batch"] = {
                f"c{BATCH_CONNS}": {
                    "gateway": combine(batch[0]),
                    "bound": combine(batch[1]),
                    "bare": combine(batch[2]),
                    "parse_us": parse_cost(case.batch_body, turn_s),
                }
            }
            res["status"] = "ok"
    except Failed as e:
        for res in results:
            if res["status"] != "ok":
                res["reason"] = str(e)
    finally:
        finish(server)
        loadgen.stop(bare_proc, bare_port)
    return results


def _wrk_turn(
    url: str, body: Path, rows: int, conns: int, seconds: float, headers: dict[str, str], pid: int
) -> dict[str, Any]:
    return loadgen.wrk(url, body, conns, seconds, rows, headers, loadgen.LOAD_CPU, pid, loadgen.SERVER_CPU)


# the gateway's parse of a positional-rows batch body, alone: median µs a call of ``flat_rows`` (the
# shape check and simdjson into one buffer of doubles), on the body the load steps send
_PARSE = (
    "import json, sys, time\n"
    "from bundlegate.http.v1._flatrows import flat_rows\n"
    "body = open(sys.argv[1], 'rb').read()\n"
    "width, end, times = len(json.loads(body)['inputs'][0]), time.perf_counter() + float(sys.argv[2]), []\n"
    "while time.perf_counter() < end:\n"
    "    t = time.perf_counter()\n"
    "    parsed = flat_rows(body, width, 1_000_000)\n"
    "    times.append(time.perf_counter() - t)\n"
    "assert parsed is not None, 'flat_rows refused the bench body'\n"
    "print(sorted(times)[len(times) // 2] * 1e6)\n"
)


def parse_cost(body: Path, seconds: float) -> float:
    """µs a call of ``flat_rows`` on ``body`` in a fresh process pinned to the server's CPU (median)."""
    cmd = ["taskset", "-c", loadgen.SERVER_CPU, sys.executable, "-c", _PARSE, str(body), f"{seconds:g}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if out.returncode:
        raise Failed(f"parse timing failed: {out.stderr.strip()[-300:]}")
    return round(float(out.stdout), 1)


def ort_turn(model: str, seconds: float) -> dict[str, Any]:
    """One turn of raw onnxruntime on the harness's 1000-row batch (``ort_turn.py``), pinned to CPU 1,
    in the shape of a ``loadgen.wrk`` step."""
    cmd = [str(PEERS_ROOT / "venv-tools" / "bin" / "python"), str(HERE / "ort_turn.py"), str(HARNESS)]
    cmd = ["taskset", "-c", loadgen.SERVER_CPU, *cmd, str(PEERS_ROOT / "models"), model, f"{seconds:g}"]
    out = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=False,
        env={**os.environ, **loadgen.THREAD_ENV},
    )
    if out.returncode:
        raise Failed(f"raw onnxruntime turn failed: {out.stderr.strip()[-300:]}")
    r = json.loads(out.stdout)
    return {
        "conns": 1,
        "rps": r["calls_per_s"],
        "rows_per_s": r["rows_per_s"],
        "p50_ms": r["p50_ms"],
        "p99_ms": r["p99_ms"],
        "errors": 0,
        "wrk": {"mean_us": 1e6 / r["calls_per_s"]},
    }


def alternate(*sides: Callable[[], dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """``PAIRS`` turns of each side, in the order ABBA... (ABCCBA... for three); each side's turns in
    order."""
    turns: list[list[dict[str, Any]]] = [[] for _ in sides]
    for p in range(PAIRS):
        for j in range(len(sides)) if p % 2 == 0 else reversed(range(len(sides))):
            turns[j].append(sides[j]())
    return turns


def take_turns(
    sides: list[list[Server]], case: ModelCase, kind: str, conns: int, headers: dict[str, str], turn_s: float
) -> list[list[dict[str, Any]]]:
    """``PAIRS`` runs of one load step on each side (``alternate``); each side's runs in order. A side
    of one server and one loader gets one wrk; others get ``split_turn`` (a wrk a loader, each against
    the side's gateways in turn)."""
    path, body, rows = (
        (case.single_path, case.single_body, 1)
        if kind == "single"
        else (case.batch_path, case.batch_body, case.batch_rows)
    )

    def turn(s: Server, c: int, count_cpu: bool = True) -> dict[str, Any]:
        v = s.variant
        pid = s.proc.pid if count_cpu else None  # a server loaded by two wrk counts its CPU once
        return loadgen.wrk(s.base + path, body, c, turn_s, rows, headers, v.wrk_cpus, pid, v.server_cpus)

    def side_turn(side: list[Server]) -> Callable[[], dict[str, Any]]:
        loaders = max(len(side), side[0].variant.loaders)
        if loaders == 1:
            return lambda: turn(side[0], conns)
        targets = [side[j % len(side)] for j in range(loaders)]
        loads = [
            functools.partial(turn, s, conns // loaders, all(s is not t for t in targets[:j]))
            for j, s in enumerate(targets)
        ]
        return lambda: split_turn(loads)

    return alternate(*(side_turn(side) for side in sides))


def split_turn(loads: list[Callable[[], dict[str, Any]]]) -> dict[str, Any]:
    """Run wrk steps at once (one a loader) and add them up, as one step of all their connections:
    requests/s and rows/s summed, the servers' CPU summed (µs a request over all answered; a part
    without a server's CPU loads a server another part measures), latency the slowest part's (its p50
    and p99; their requests are not pooled), steal the mean."""
    with ThreadPoolExecutor(len(loads)) as pool:
        parts = list(pool.map(lambda load: load(), loads))
    out: dict[str, Any] = {
        "conns": sum(p["conns"] for p in parts),
        "rps": round(sum(p["rps"] for p in parts), 1),
        "rows_per_s": round(sum(p["rows_per_s"] for p in parts), 1),
        "p50_ms": max(p["p50_ms"] for p in parts),
        "p99_ms": max(p["p99_ms"] for p in parts),
        "errors": sum(p["errors"] for p in parts),
        "wrk": {"mean_us": max(p["wrk"]["mean_us"] for p in parts)},
        "parts": parts,
    }
    if any("server_cpu_pct" in p for p in parts):  # the parts that measured a server (each server once)
        cpu_pct = sum(p.get("server_cpu_pct", 0.0) for p in parts)
        out["server_cpu_pct"] = round(cpu_pct, 1)
        out["server_cpu_us"] = round(cpu_pct / 100 / out["rps"] * 1e6, 1) if out["rps"] else 0.0
    for key in ("steal_pct", "load_steal_pct"):
        if all(key in p for p in parts):
            out[key] = round(sum(p[key] for p in parts) / len(parts), 1)
    return out


def turn_seconds(step_seconds: float) -> float:
    """How long one turn of a pair runs: a third of a step, at least 2 s."""
    return max(2.0, step_seconds / 3)


_TURN_FIGURES = (
    "rps",
    "rows_per_s",
    "p50_ms",
    "p99_ms",
    "server_cpu_us",
    "server_cpu_pct",
    "steal_pct",
    "load_steal_pct",
)


def combine(turns: list[dict[str, Any]]) -> dict[str, Any]:
    """One load step from its turns: the median of each figure, errors summed, each turn kept."""
    kept = [{k: t[k] for k in _TURN_FIGURES if k in t} for t in turns]
    out: dict[str, Any] = {k: median(t[k] for t in kept) for k in _TURN_FIGURES if all(k in t for t in kept)}
    out.update(
        conns=turns[0]["conns"],
        errors=sum(t["errors"] for t in turns),
        wrk={"mean_us": median(t["wrk"]["mean_us"] for t in turns)},
        turns=kept,
    )
    return out


def measure(
    case: ModelCase,
    res: dict[str, Any],
    variant: Variant,
    base: str,
    headers: dict[str, str],
    seconds: float,
    pid: int,
) -> None:
    check = verify(case, base, headers)
    res["verify"] = check
    if not check["ok"]:
        res["status"] = "wrong-answers"
        res["reason"] = check["reason"]
        return
    url1, urlb = base + case.single_path, base + case.batch_path
    wrk_cpus, server_cpus = variant.wrk_cpus, variant.server_cpus
    loadgen.wrk(url1, case.single_body, 16, WARMUP_S, 1, headers, wrk_cpus)  # warm-up, not recorded
    batches_warm = False
    for kind, conns in variant.steps:
        if kind == "single":
            res.setdefault("single", {})[f"c{conns}"] = loadgen.wrk(
                url1, case.single_body, conns, seconds, 1, headers, wrk_cpus, pid, server_cpus
            )
        elif kind == "binary":
            if case.binary_body is None:
                continue
            binary_headers = binary_request_headers(case, headers)
            check = verify_binary(case, base, binary_headers)
            res["verify_binary"] = check
            if not check["ok"]:  # shown in RESULTS.md; the JSON steps above still count
                res["binary_error"] = check["reason"]
                continue
            res.setdefault("binary", {})[f"c{conns}"] = loadgen.wrk(
                base + case.binary_path,
                case.binary_body,
                conns,
                seconds,
                case.batch_rows,
                binary_headers,
                wrk_cpus,
                pid,
                server_cpus,
            )
        else:
            # batches warm up right before their own steps, so single rows are measured after the same
            # warm-up in every variant (the batching-off server never sees batches)
            if not batches_warm:
                loadgen.wrk(urlb, case.batch_body, BATCH_CONNS, WARMUP_S, case.batch_rows, headers, wrk_cpus)
                batches_warm = True
            res.setdefault("batch", {})[f"c{conns}"] = loadgen.wrk(
                urlb, case.batch_body, conns, seconds, case.batch_rows, headers, wrk_cpus, pid, server_cpus
            )
    res["status"] = "ok"


# ---------------------------------------------------------------------- the peers


def load_harness() -> ModuleType | None:
    """The shared peer harness's ``bench`` module, or None when it is not there."""
    if not (HARNESS / "bench.py").exists():
        return None
    os.environ.setdefault("PEERS_ROOT", str(PEERS_ROOT))
    sys.path.insert(0, str(HARNESS))
    import bench as peers  # the harness module (stdlib only)

    return peers


def peer_names(spec: str, peers: ModuleType | None) -> list[str]:
    if spec == "none" or peers is None:
        return []
    if spec == "bounds":
        return list(BOUNDS)
    if spec == "all":
        return [t.name for t in peers.TARGETS] + ["onnxruntime-raw"]
    return [n.strip() for n in spec.split(",") if n.strip()]


def peer_available(name: str, peers: ModuleType) -> str | None:
    """None when the peer can run, else why not."""
    if not (PEERS_ROOT / "models" / "samples.json").exists():
        return f"no {PEERS_ROOT}/models/samples.json (run the harness's prepare.sh)"
    if name == "onnxruntime-raw":
        venv = "tools"
    else:
        target = next((t for t in peers.TARGETS if t.name == name), None)
        if target is None:
            return f"unknown peer {name!r}"
        venv = target.venv
    if not (PEERS_ROOT / f"venv-{venv}" / "bin" / "python").exists():
        return f"no virtualenv {PEERS_ROOT}/venv-{venv}"
    return None


def run_peer(
    name: str, model: str, peers: ModuleType, samples: dict[str, Any], seconds: float
) -> dict[str, Any]:
    if name == "onnxruntime-raw":
        return dict(peers.run_ort(model, 5))
    target = next(t for t in peers.TARGETS if t.name == name)
    return dict(peers.run_target(target, model, samples, seconds, loadgen.free_port()))


# ---------------------------------------------------------------------- driver


def describe_machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "?")
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in (
        "bundlegate",
        "onnxruntime",
        "numpy",
        "starlette",
        "uvicorn",
        "uvloop",
        "httptools",
        "orjson",
        "prometheus-client",
        "scikit-learn",
        "skl2onnx",
    ):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = "-"
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    first = (wrk_version.stdout or wrk_version.stderr).split("\n")[0].split()
    versions["wrk"] = first[1] if len(first) > 1 else "?"
    versions["python"] = platform.python_version()
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "kernel": os.uname().release,
        "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "versions": versions,
        "commit": commit + (" (src/ with uncommitted changes)" if dirty else ""),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=1, help="repeat everything; RESULTS.md shows medians")
    ap.add_argument("--duration", type=int, default=10, help="seconds per load step (default 10)")
    ap.add_argument("--peers", default="bounds", help="bounds (default) | all | none | comma list of targets")
    ap.add_argument("--models", default="m1,m2")
    ap.add_argument("--no-examples", action="store_true", help="skip the example bundles in bundles/")
    ap.add_argument("--no-variants", action="store_true", help="skip batching-off and the --workers runs")
    ap.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    ap.add_argument(
        "--only",
        default="",
        help="comma list of parts to run: gateway, peers, bounds, off, workers, examples, profile (default: all)",
    )
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    a = ap.parse_args(argv)
    only = set(filter(None, a.only.split(",")))
    if only:
        a.no_examples = a.no_examples or "examples" not in only
        a.no_profile = a.no_profile or "profile" not in only
    if not 1 <= a.rounds <= 10 or not 1 <= a.duration <= 60:
        ap.error("--rounds must be 1-10 and --duration 1-60 s")

    os.sched_setaffinity(0, {int(loadgen.LOAD_CPU)})
    for d in ("logs", "run"):
        (BENCH_ROOT / d).mkdir(parents=True, exist_ok=True)
    models = a.models.split(",")
    peers = load_harness()
    names = peer_names(a.peers if not only or "peers" in only else "none", peers)
    skipped = {}
    if peers is not None:
        (PEERS_ROOT / "logs").mkdir(parents=True, exist_ok=True)
        (PEERS_ROOT / "run").mkdir(parents=True, exist_ok=True)
        for n in list(names):
            why = peer_available(n, peers)
            if why:
                skipped[n] = why
                names.remove(n)
    elif a.peers != "none":
        skipped["all peers"] = f"no peer harness at {HARNESS} (set PEERS_HARNESS)"

    # the gateway against bare starlette and raw onnxruntime taking turns: the target ratios' own pairs
    bounds = (
        peers is not None
        and a.peers != "none"
        and all(peer_available(n, peers) is None for n in BOUNDS)
        and (not only or "bounds" in only)
    )
    log(f"work dir {BENCH_ROOT}; peers: {', '.join(names) or 'none'}; skipped: {skipped or 'none'}")
    samples = gateway.prepare_models(BENCH_ROOT)
    setup_error = None
    repo, keys, key = BENCH_ROOT / "repo", BENCH_ROOT / "keys.json", ""
    try:
        repo = gateway.pack_models(BENCH_ROOT, models)
        keys, key = gateway.create_key(BENCH_ROOT)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        setup_error = " ".join(str(e).split())
        log(f"gateway setup failed, measuring the peers only: {setup_error}")
    cases = gateway.bench_cases(BENCH_ROOT, samples, models)
    examples = [] if a.no_examples else gateway.example_cases(BENCH_ROOT, REPO / "bundles")
    peer_samples = json.loads((PEERS_ROOT / "models" / "samples.json").read_text()) if names or bounds else {}
    same_models = (
        all(
            peer_samples.get(m, {}).get(k) == samples[m][k] for m in models for k in ("row", "batch_expected")
        )
        if peer_samples
        else None
    )

    data: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "bench/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "rounds": a.rounds,
        "duration_s": a.duration,
        "machine": describe_machine(),
        "peers_skipped": skipped,
        "same_models_as_peers": same_models,
        "variants": {v.name: {"note": v.note, "cmd_extra": v.extra} for v in VARIANTS.values()},
        "paired": {"pairs": PAIRS, "turn_s": turn_seconds(a.duration)},
        "runs": {},
        "gateway_error": setup_error,
        "paths": {
            "BENCH_ROOT": str(BENCH_ROOT),
            "PEERS_ROOT": str(PEERS_ROOT),
            "PEERS_HARNESS": str(HARNESS),
            "REPO": str(REPO),
        },
    }
    raw_path = BENCH_ROOT / "results.json"

    def record(results: list[dict[str, Any]], rnd: int, prefix: str = "") -> None:
        for r in results:
            key_ = f"{prefix}{r['model']}/{r['target']}"
            data["runs"].setdefault(key_, []).append({**r, "round": rnd})
            extra = ""
            if r["target"] == "bounds":
                if r["status"] == "ok":
                    (s16,), (b4,) = r["single"].values(), r["batch"].values()
                    extra = f"c16 {s16['gateway']['rps']:.0f} vs bare {s16['bound']['rps']:.0f} rps, batch "
                    extra += (
                        f"{b4['gateway']['rows_per_s']:.0f} vs raw {b4['bound']['rows_per_s']:.0f} rows/s"
                    )
            elif r["target"] == "onnxruntime-raw" and "batch" in r:
                extra = f"batch={r['batch']['rows_per_s']:.0f}rows/s"
            elif "single" in r:
                extra = " ".join(f"{c}={v['rps']:.0f}rps" for c, v in r["single"].items())
            if "batch" in r and "c4" in r["batch"] and r["target"] != "bounds":
                extra += f" batch={r['batch']['c4']['rows_per_s']:.0f}rows/s"
            log(f"    {r['target']} / {r['model']}: {r['status']} {r.get('reason', '')} {extra}")
        raw_path.write_text(json.dumps(data, indent=1))

    variants = ["gateway"]
    pairs = [] if a.no_variants else list(PAIRED)
    if only:
        variants = ["gateway"] if "gateway" in only else []
        pairs = [p for p, part in zip(PAIRED, ("off", "workers"), strict=True) if part in only]
    if setup_error:
        variants, pairs, examples, bounds = [], [], [], False
    for rnd in range(1, a.rounds + 1):
        for name in variants:
            log(f"round {rnd}: {name} ({', '.join(models)})")
            record(run_gateway(VARIANTS[name], repo, cases, keys, key, a.duration, f"r{rnd}"), rnd)
        for model in models:
            for name in names:
                log(f"round {rnd}: {name} / {model}")
                assert peers is not None
                record([run_peer(name, model, peers, peer_samples, a.duration)], rnd)
        if bounds:
            assert peers is not None
            log(f"round {rnd}: gateway and its bounds taking turns ({', '.join(models)})")
            record(run_bounds(repo, cases, keys, key, a.duration, f"r{rnd}", peers, peer_samples), rnd)
        for pair in pairs:
            on = cases if pair == PAIRED[0] else cases[:1]  # --workers: M1 only
            log(f"round {rnd}: {', '.join(pair)} taking turns ({', '.join(c.name for c in on)})")
            record(run_pair(pair, repo, on, keys, key, a.duration, f"r{rnd}"), rnd)
            if pair == PAIRED[1]:
                log(f"round {rnd}: the machine's own scaling, 2 busy processes vs 1")
                data.setdefault("cpu_scaling", []).extend(loadgen.cpu_scaling(2.0, PAIRS))
        if examples:
            log(f"round {rnd}: example bundles ({', '.join(c.name for c in examples)})")
            example_variant = Variant("gateway", [], (("single", 1), ("single", 16), ("batch", BATCH_CONNS)))
            results = run_gateway(
                example_variant, REPO / "bundles", examples, keys, key, a.duration, f"ex-r{rnd}"
            )
            for c, r in zip(examples, results, strict=True):
                r["note"] = c.note
            record(results, rnd, prefix="example:")

    if not a.no_profile and not setup_error:
        for case in cases:
            for batch in (False, True):
                what = f"{case.name} {'batch' if batch else 'single'}"
                log(f"profile: py-spy on the gateway, {what}")
                data.setdefault("profile", {})[what] = profiling.profile_gateway(
                    repo, case, keys, key, min(a.duration * 2, 20), BENCH_ROOT, batch=batch
                )
                raw_path.write_text(json.dumps(data, indent=1))

    report.write(data, a.out)
    log(f"wrote {a.out} (raw results: {raw_path})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
