"""Cold start of many small bundles: ``bundle serve --lazy`` over N copies of the M1 bundle.

  python bench/cold_start.py [--bundles 1000] [--concurrency 4] [--eager] [--budget-mb MB]

Packs M1 (bench/models.py) once, copies it to N models (``m1-0000`` ...), then starts the gateway
and measures: time from the process start to ``/readyz`` 200, its resident memory (VmRSS) then, the
latency of the first request to every model (each one loads its version on demand), the latency of a
second round (all loaded), and the resident memory after. ``--eager`` measures the same without
``--lazy`` for comparison; ``--budget-mb`` adds ``--memory-budget-mb``. Work files go under
``BENCH_ROOT`` (default ``<tmp>/bundlegate-bench``); the figures are printed as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway import bundle_cli, pack_models, prepare_models

BENCH_ROOT = Path(os.environ.get("BENCH_ROOT", Path(tempfile.gettempdir()) / "bundlegate-bench"))
READY_TIMEOUT_S = 900.0


def many_bundles(root: Path, count: int) -> Path:
    """``count`` copies of the packed M1 bundle as models ``m1-0000`` ... in ``root/many``."""
    source = pack_models(root, ["m1"]) / "m1" / "1"
    repo = root / "many"
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    manifest = json.loads((source / "bundle.json").read_text())
    for i in range(count):
        name = f"m1-{i:04d}"
        target = repo / name / "1"
        shutil.copytree(source, target)
        (target / "bundle.json").write_text(json.dumps({**manifest, "name": name}))
    return repo


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def one_round(url: str, names: list[str], row: list[float], concurrency: int) -> list[float]:
    """One request to every model in ``names`` from ``concurrency`` threads; latencies in seconds."""
    latencies: list[float] = []
    failures: list[str] = []
    todo = iter(names)
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=60.0) as client:
            while True:
                with lock:
                    name = next(todo, None)
                if name is None:
                    return
                started = time.perf_counter()
                r = client.post(f"/v1/models/{name}/predict", json={"inputs": row})
                latencies.append(time.perf_counter() - started)
                if r.status_code != 200:
                    failures.append(f"{name}: {r.status_code}")

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError(f"{len(failures)} failed requests, first: {failures[0]}")
    return latencies


def measure(
    repo: Path, names: list[str], row: list[float], extra: list[str], concurrency: int
) -> dict[str, Any]:
    port = free_port()
    cmd = [*bundle_cli(), "serve", str(repo), "--port", str(port), "--insecure-no-auth", "--no-access-log"]
    log = (BENCH_ROOT / "logs" / f"cold-start-{port}.log").open("w")
    started = time.monotonic()
    process = subprocess.Popen([*cmd, *extra], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if process.poll() is not None or time.monotonic() - started > READY_TIMEOUT_S:
                raise RuntimeError(f"the gateway did not get ready (exit {process.returncode})")
            try:
                if httpx.get(url + "/readyz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        ready_s = time.monotonic() - started
        rss_ready = rss_mb(process.pid)
        first = one_round(url, names, row, concurrency)
        rss_first = rss_mb(process.pid)
        second = one_round(url, names, row, concurrency)
        return {
            "flags": extra,
            "bundles": len(names),
            "concurrency": concurrency,
            "ready_s": round(ready_s, 2),
            "rss_ready_mb": round(rss_ready, 1),
            "first_request_p50_ms": round(percentile(first, 50) * 1000, 2),
            "first_request_p99_ms": round(percentile(first, 99) * 1000, 2),
            "first_request_max_ms": round(max(first) * 1000, 2),
            "second_request_p99_ms": round(percentile(second, 99) * 1000, 2),
            "rss_after_first_round_mb": round(rss_first, 1),
        }
    finally:
        process.terminate()
        process.wait(60)
        log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundles", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--eager", action="store_true", help="also measure without --lazy")
    parser.add_argument("--budget-mb", type=int, default=0, help="also measure --lazy under this budget")
    args = parser.parse_args(argv)
    (BENCH_ROOT / "logs").mkdir(parents=True, exist_ok=True)
    samples = prepare_models(BENCH_ROOT)
    repo = many_bundles(BENCH_ROOT, args.bundles)
    names = sorted(p.name for p in repo.iterdir())
    row = samples["m1"]["row"]
    runs = [measure(repo, names, row, ["--lazy"], args.concurrency)]
    if args.budget_mb:
        runs.append(
            measure(repo, names, row, ["--lazy", "--memory-budget-mb", str(args.budget_mb)], args.concurrency)
        )
    if args.eager:
        runs.append(measure(repo, names, row, [], args.concurrency))
    print(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
