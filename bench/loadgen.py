"""Load generation and process handling, mirroring the peer harness (shared/bench/peers/bench.py).

The gateway is measured with the same wrk command, Lua script, warm-up and steps as the peers, so the
numbers compare. Only ``taskset`` CPU lists are parameters here (the harness hard-codes CPU 1 for the
server and CPU 0 for wrk), because the ``--workers`` comparison runs unpinned.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WRK_SCRIPT = HERE / "wrk_report.lua"
SERVER_CPU, LOAD_CPU = "1", "0"
ALL_CPUS = f"0-{(os.cpu_count() or 1) - 1}"
THREAD_ENV = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
START_TIMEOUT_S = 120


class Failed(Exception):
    """A server or load step that did not work; reported in the results, never timed."""


# ---------------------------------------------------------------------- processes


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        out.append(p)
        stack += kids.get(p, [])
    return out


def memory_mib(pids: list[int]) -> tuple[float, float]:
    """RSS and PSS summed over ``pids``, MiB."""
    rss = pss = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            pass
    return round(rss / 1024, 1), round(pss / 1024, 1)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by ``pids`` (those still alive)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / tick


def cpu_list(cpus: str) -> list[int]:
    """``"1"`` / ``"0-1"`` / ``"0,2"`` (taskset's list syntax) as CPU numbers."""
    out: list[int] = []
    for part in cpus.split(","):
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


def steal_seconds() -> dict[int, float]:
    """Per CPU, the seconds the hypervisor has so far run something else while it wanted to run (the
    ``steal`` column of /proc/stat; empty where the kernel does not report it)."""
    tick = os.sysconf("SC_CLK_TCK")
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and len(fields) > 7:
            out[int(name[3:])] = int(fields[7]) / tick
    return out


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(cmd: list[str], cpus: str, log_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start ``cmd`` under ``taskset -c cpus`` in its own session (so ``stop`` reaches its whole group)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            ["taskset", "-c", cpus, *cmd],
            env={**os.environ, **THREAD_ENV, "PYTHONDONTWRITEBYTECODE": "1", **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes], port: int) -> None:
    """SIGTERM the process group the server leads, SIGKILL leftovers by pid, wait for the port to close."""
    pids = tree(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(25)
    for p in [proc.pid, *pids]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, signal.SIGKILL)
    proc.wait()
    for _ in range(40):
        if not port_open(port):
            break
        time.sleep(0.25)


def wait_ready(proc: subprocess.Popen[bytes], url: str, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise Failed(f"server exited with code {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if 200 <= r.status < 300:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise Failed(f"not ready at {url} after {timeout_s:.0f}s")


# ---------------------------------------------------------------------- HTTP and load


def post(url: str, body: Any, headers: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, Any]:
    """POST JSON; (status, decoded JSON) or (status, the first 500 characters of an error body)."""
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data, {"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read()[:500].decode(errors="replace")


def wrk(
    url: str,
    body_file: Path,
    conns: int,
    seconds: float,
    rows: int,
    headers: dict[str, str] | None = None,
    cpus: str = LOAD_CPU,
    server_pid: int | None = None,
    server_cpus: str | None = None,
) -> dict[str, Any]:
    """One load step: ``wrk -t1 -c{conns}`` POSTing ``body_file`` for ``seconds``, pinned to ``cpus``.
    With ``server_pid``, also the CPU its process tree used: % of one CPU and µs per answered request;
    with ``server_cpus``, the host's steal time on those CPUs and on wrk's as % of their time (a slow
    spell of the host: on wrk's CPU it starves the server of requests)."""
    cmd = ["taskset", "-c", cpus, "wrk", "-t1", f"-c{conns}", f"-d{seconds:g}s", "--timeout", "30s"]
    cmd += ["-s", str(WRK_SCRIPT), url]
    hdr = "\n".join(f"{k}: {v}" for k, v in (headers or {}).items())
    env = {**os.environ, "BODY_FILE": str(body_file), "EXTRA_HEADERS": hdr}
    pids = tree(server_pid) if server_pid is not None else []
    cpu0, steal0 = cpu_seconds(pids), steal_seconds()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 90, check=False)
    cpu, steal1 = cpu_seconds(pids) - cpu0, steal_seconds()
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")]
    if not line:
        raise Failed(f"wrk produced no result: {out.stdout[-300:]} {out.stderr[-300:]}")
    r = json.loads(line[-1][8:])
    secs = r["duration_us"] / 1e6
    ok = r["requests"] - r["err_status"]
    server_cpu = {}
    if pids and ok:
        server_cpu = {"server_cpu_pct": round(100 * cpu / secs, 1), "server_cpu_us": round(cpu / ok * 1e6, 1)}
    if server_cpus and steal1:
        for key, on in (("steal_pct", cpu_list(server_cpus)), ("load_steal_pct", cpu_list(cpus))):
            stolen = sum(steal1.get(c, 0.0) - steal0.get(c, 0.0) for c in on)
            server_cpu[key] = round(100 * stolen / (secs * len(on)), 1)
    return {
        **server_cpu,
        "conns": conns,
        "rps": round(ok / secs, 1),
        "rows_per_s": round(ok * rows / secs, 1),
        "p50_ms": r["p50_us"] / 1e3,
        "p99_ms": r["p99_us"] / 1e3,
        "errors": sum(v for k, v in r.items() if k.startswith("err_")),
        "wrk": r,
    }


# ---------------------------------------------------------------------- the machine itself

_BUSY = (
    "import sys, time\n"
    "end, n = time.perf_counter() + float(sys.argv[1]), 0\n"
    "while time.perf_counter() < end:\n"
    "    for _ in range(10000):\n"
    "        pass\n"
    "    n += 1\n"
    "print(n)\n"
)


def busy_work(processes: int, seconds: float) -> int:
    """Run ``processes`` copies of a pure-Python busy loop at once, unpinned; the loops they completed."""
    procs = [
        subprocess.Popen(
            ["taskset", "-c", ALL_CPUS, sys.executable, "-c", _BUSY, str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    return sum(int(p.communicate(timeout=seconds + 30)[0]) for p in procs)


def cpu_scaling(seconds: float, pairs: int) -> list[float]:
    """What two CPU-bound processes get done against one on this box, turn by turn (1,2,2,1,...): the
    ceiling of any two-worker server here, before its load generator takes its share of the CPUs."""
    out = []
    for p in range(pairs):
        if p % 2 == 0:
            one = busy_work(1, seconds)
            two = busy_work(2, seconds)
        else:
            two = busy_work(2, seconds)
            one = busy_work(1, seconds)
        out.append(round(two / one, 3) if one else 0.0)
    return out
