"""Where the gateway's time goes: py-spy samples the pinned server under single-row load at c=16.

``py-spy record --format raw`` writes collapsed stacks (``frame;frame;... count``); this module sums them
by the leaf frame (self time) and by area (the innermost frame that belongs to a known area), and keeps
the raw file and a flame graph in the work dir. Idle time (the event loop waiting in epoll) is not
sampled, so the shares are shares of the server's busy time.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import gateway
import loadgen
from gateway import ModelCase

PY_SPY = Path(sys.executable).parent / "py-spy"
# (area, pattern on "function (file:line)"); the innermost matching frame names the area of a sample
AREAS = [
    ("onnxruntime session.run", r"onnxruntime/"),
    (
        "schema: JSON -> numpy, answers",
        r"bundlegate/(schema|tensor_plan|value_checks|request_shapes|answers|feed)\.py",
    ),
    ("batching queue", r"bundlegate/batching\.py"),
    ("runtime (predict wrapper)", r"bundlegate/runtime\.py"),
    ("metrics", r"bundlegate/metrics\.py|prometheus_client/"),
    ("auth / keys", r"bundlegate/(keys|ratelimit)\.py|bundlegate/http/auth\.py"),
    ("access log / logging", r"^AccessLog\.|^logging|/logging/"),
    ("JSON body / errors", r"bundlegate/http/(jsonbody|errors)\.py"),
    ("gateway HTTP (routing, endpoints)", r"bundlegate/http/"),
    ("starlette", r"starlette/"),
    ("uvicorn + httptools protocol", r"uvicorn/|httptools"),
    ("asyncio / uvloop event loop", r"asyncio/|uvloop"),
]


def summarize(raw: str, top: int = 15) -> dict[str, Any]:
    """Self time by function and time by area from py-spy's collapsed stacks."""
    leaf: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        leaf[_short(frames[-1])] += count
        area = "other"
        for frame in reversed(frames):
            hit = next((name for name, pattern in AREAS if re.search(pattern, frame)), None)
            if hit:
                area = hit
                break
        areas[area] += count
    if not total:
        return {"samples": 0}
    return {
        "samples": total,
        "areas": [(a, round(100 * n / total, 1)) for a, n in areas.most_common()],
        "self": [(f, round(100 * n / total, 1)) for f, n in leaf.most_common(top)],
    }


def _short(frame: str) -> str:
    """``func (/long/path/site-packages/pkg/mod.py:12)`` -> ``func (pkg/mod.py:12)``."""
    m = re.match(r"(.*) \((.*):(\d+)\)$", frame)
    if not m:
        return frame
    func, path, line = m.groups()
    parts = Path(path).parts
    for anchor in ("site-packages", "src", "lib"):
        if anchor in parts:
            parts = parts[len(parts) - parts[::-1].index(anchor) :]
            break
    return f"{func} ({'/'.join(parts[-3:])}:{line})"


def profile_gateway(
    repo: Path, case: ModelCase, keys: Path, key: str, seconds: float, root: Path, batch: bool = False
) -> dict[str, Any]:
    """Start the gateway pinned, load it with single rows at c=16 (or 1000-row batches at c=4) and
    sample it with py-spy."""
    if not PY_SPY.exists():
        return {"error": f"py-spy not installed in {PY_SPY.parent}"}
    port = loadgen.free_port()
    headers = {"Authorization": f"Bearer {key}"}
    path, body, conns = (
        (case.batch_path, case.batch_body, 4) if batch else (case.single_path, case.single_body, 16)
    )
    url = f"http://127.0.0.1:{port}{path}"
    tag = f"{case.name}-{'batch' if batch else 'single'}"
    proc = loadgen.start(
        gateway.serve_command(repo, port, keys, []), loadgen.SERVER_CPU, root / "logs" / "profile.log", {}
    )
    raw_file = root / f"profile-{tag}.txt"
    svg_file = root / f"profile-{tag}.svg"
    try:
        loadgen.wait_ready(proc, f"http://127.0.0.1:{port}/readyz")
        loadgen.wrk(url, body, conns, 3, 1, headers)  # warm-up
        load: dict[str, Any] = {}
        worker = threading.Thread(
            target=lambda: load.update(loadgen.wrk(url, body, conns, seconds + 4, 1, headers))
        )
        worker.start()
        time.sleep(1)
        out = {}
        for fmt, path in (("raw", raw_file), ("flamegraph", svg_file)):
            res = subprocess.run(
                [
                    str(PY_SPY),
                    "record",
                    "--pid",
                    str(proc.pid),
                    "--subprocesses",
                    "--rate",
                    "200",
                    "--duration",
                    str(int(seconds // 2)),
                    "--format",
                    fmt,
                    "--output",
                    str(path),
                    "--nonblocking",
                ],
                capture_output=True,
                text=True,
                timeout=seconds + 60,
                check=False,
            )
            if res.returncode:
                out["error"] = f"py-spy failed: {res.stderr.strip()[-400:]}"
                break
        worker.join()
        if "error" in out:
            return out
        summary = summarize(raw_file.read_text())
        return {
            **summary,
            "rps_while_sampled": load.get("rps"),
            "load": f"{'1000-row batches at c=4' if batch else 'single rows at c=16'}",
            "raw": str(raw_file),
            "svg": str(svg_file),
        }
    except (loadgen.Failed, OSError, subprocess.TimeoutExpired) as e:
        return {"error": str(e)}
    finally:
        loadgen.stop(proc, port)
