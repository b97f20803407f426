"""A soak: ``bundle serve`` on the example bundles for ten minutes under steady load with 1% hostile
requests mixed in, and the server's memory, file descriptors and 5xx answers before and after.

Not part of CI (it takes the whole duration). Run it from the repository root::

    .venv/bin/python bench/soak.py                    # 600 s, 4 client threads
    .venv/bin/python bench/soak.py --seconds 60 --threads 2

Each client thread sends the iris canary (a right answer is checked) on a kept-alive connection and,
one request in a hundred, one of the hostile requests of ``HOSTILE`` on a connection of its own
(slow heads are left open for the server's head deadline to close). The server runs with its
default limits. Prints one JSON document; ``bench/HISTORY.md`` keeps the figures of past runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
SETOSA = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
BODY = json.dumps({"inputs": SETOSA}).encode()
MAX_OPEN_SLOW = 200  # slow connections a thread leaves open at most (each closed by the server)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def server_figures(pid: int, metrics_url: str) -> dict[str, object]:
    """The server process's resident memory, open descriptors and 5xx count from its metrics."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kib = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    text = httpx.get(metrics_url, timeout=10).text
    codes: Counter[str] = Counter()
    for line in text.splitlines():
        m = re.match(r'bundlegate_requests_total\{.*code="(\d+)".*\} ([0-9.e+]+)', line)
        if m:
            codes[m.group(1)] += int(float(m.group(2)))
    return {
        "rss_mib": round(rss_kib / 1024, 1),
        "open_fds": fds,
        "requests": sum(codes.values()),
        "5xx": sum(n for c, n in codes.items() if c.startswith("5")),
        "codes": dict(sorted(codes.items())),
    }


def raw(port: int, data: bytes, *, read: bool = True) -> socket.socket | None:
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    with contextlib.suppress(OSError):
        sock.sendall(data)
    if not read:
        return sock
    with contextlib.suppress(OSError):
        while sock.recv(65536):
            pass
    sock.close()
    return None


def hostile_requests(port: int, key: str) -> dict[str, Callable[[], socket.socket | None]]:
    def head(path: str, *lines: str) -> bytes:
        return ("\r\n".join([f"POST {path} HTTP/1.1", "Host: soak", *lines, "", ""])).encode()

    predict = "/v1/models/iris/predict"
    bearer = f"Authorization: Bearer {key}"
    json_type = "Content-Type: application/json"
    return {
        "huge_header": lambda: raw(port, head(predict, "X-Junk: " + "a" * 200_000, "Content-Length: 0")),
        "many_headers": lambda: raw(
            port, head(predict, *[f"X-{i}: 1" for i in range(500)], "Content-Length: 0")
        ),
        "slow_head": lambda: raw(
            port, b"POST /v1/models/iris/predict HTTP/1.1\r\nHost: soak\r\n", read=False
        ),
        "slow_body": lambda: raw(
            port, head(predict, bearer, json_type, "Content-Length: 500") + b'{"in', read=False
        ),
        "silent": lambda: raw(port, b"", read=False),
        "chunked_flood": lambda: raw(
            port,
            head(predict, bearer, json_type, "Transfer-Encoding: chunked")
            + (b"4000\r\n" + b"x" * 0x4000 + b"\r\n") * 1100,  # ~17.6 MiB, over the 16 MiB limit
        ),
        "twice_authorization": lambda: raw(
            port, head(predict, bearer, bearer, json_type, f"Content-Length: {len(BODY)}") + BODY
        ),
        "odd_version": lambda: raw(
            port,
            head("/v1/models/iris/versions/%C2%B2/predict", bearer, json_type, f"Content-Length: {len(BODY)}")
            + BODY,
        ),
        "bom": lambda: raw(
            port,
            head(predict, bearer, json_type, f"Content-Length: {len(BODY) + 3}") + b"\xef\xbb\xbf" + BODY,
        ),
        "garbage": lambda: raw(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(512)),
    }


def client(url: str, port: int, key: str, until: float, seed: int, out: dict[str, Counter[str]]) -> None:
    rng = random.Random(seed)
    hostile = hostile_requests(port, key)
    names = sorted(hostile)
    answers: Counter[str] = Counter()
    sent: Counter[str] = Counter()
    slow: list[socket.socket] = []
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        while time.monotonic() < until:
            if rng.random() < 0.01:
                name = rng.choice(names)
                sent[name] += 1
                try:
                    sock = hostile[name]()
                except OSError:
                    answers["hostile_connect_error"] += 1
                    continue
                if sock is not None:
                    slow.append(sock)
                    if len(slow) > MAX_OPEN_SLOW:
                        slow.pop(0).close()
                continue
            try:
                r = http.post("/v1/models/iris/predict", content=BODY)
            except httpx.HTTPError as e:
                answers[f"canary_error_{type(e).__name__}"] += 1
                continue
            right = r.status_code == 200 and r.json().get("prediction") == "setosa"
            answers["canary_ok" if right else f"canary_{r.status_code}"] += 1
    for sock in slow:
        sock.close()
    out[f"answers-{seed}"] = answers
    out[f"hostile-{seed}"] = sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bundlegate-soak-"))
    try:
        shutil.copytree(REPO / "bundles", work / "bundles", ignore=shutil.ignore_patterns("*.py"))
        bundle = [sys.executable, "-m", "bundlegate.cli"]
        created = subprocess.run(
            [*bundle, "keys", "create", "soak", "--models", "*", "--file", str(work / "keys.json")],
            check=True,
            capture_output=True,
            text=True,
        )
        key = created.stdout.strip().splitlines()[-1]
        port, metrics_port = free_port(), free_port()
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        env = {k: v for k, v in os.environ.items() if not k.startswith("BUNDLEGATE_")}
        log = (work / "serve.log").open("w")
        server = subprocess.Popen(
            [
                *bundle,
                "serve",
                str(work / "bundles"),
                "--keys",
                str(work / "keys.json"),
                "--port",
                str(port),
                "--no-access-log",
                "--metrics-port",
                str(metrics_port),
            ],
            stdout=log,
            stderr=log,
            env=env,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                        break
                time.sleep(0.1)
            for _ in range(200):  # warm: the first requests allocate what every later one reuses
                httpx.post(
                    url + "/v1/models/iris/predict",
                    content=BODY,
                    headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                )
            before = server_figures(server.pid, metrics_url)
            out: dict[str, Counter[str]] = {}
            until = time.monotonic() + args.seconds
            threads = [
                threading.Thread(target=client, args=(url, port, key, until, i, out))
                for i in range(args.threads)
            ]
            for t in threads:
                t.start()
            rss_by_minute = []
            while any(t.is_alive() for t in threads) and time.monotonic() < until + 120:
                time.sleep(min(60.0, max(0.1, until - time.monotonic())))
                if time.monotonic() < until:
                    rss_by_minute.append(server_figures(server.pid, metrics_url)["rss_mib"])
            for t in threads:
                t.join(120)
            time.sleep(12)  # the slow connections left open reach their head deadline (10 s)
            after = server_figures(server.pid, metrics_url)
            answers: Counter[str] = Counter()
            hostile: Counter[str] = Counter()
            for name, counts in out.items():
                (answers if name.startswith("answers") else hostile).update(counts)
            errors = [line for line in (work / "serve.log").read_text().splitlines() if "Traceback" in line]
            print(
                json.dumps(
                    {
                        "seconds": args.seconds,
                        "threads": args.threads,
                        "before": before,
                        "after": after,
                        "rss_mib_each_minute": rss_by_minute,
                        "canary": dict(answers),
                        "hostile_sent": dict(sorted(hostile.items())),
                        "hostile_share": round(
                            sum(hostile.values()) / max(1, sum(hostile.values()) + sum(answers.values())), 4
                        ),
                        "server_tracebacks": len(errors),
                        "server_alive": server.poll() is None,
                    },
                    indent=2,
                )
            )
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
            log.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
