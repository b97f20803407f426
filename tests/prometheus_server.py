"""A real Prometheus for tests: start the Debian/upstream binary on 127.0.0.1, scrape targets, run PromQL.

Reusable by any test that needs to know what Prometheus (not a parser of ours) makes of something::

    with running_prometheus(["127.0.0.1:8080"]) as prom:
        result = wait_for_result(prom, "sum(rate(bundlegate_requests_total[1m]))", timeout_s=60)
        query(prom, "histogram_quantile(0.99, ...)")   # raises PromQLError if the expression is invalid

``query`` evaluates an instant query and returns the ``data.result`` list (vector/matrix) or the
``[time, value]`` pair (scalar/string); a PromQL parse or evaluation error raises ``PromQLError`` with
Prometheus' own message, so a dashboard's expressions can be checked one by one.

``require_tool("prometheus")`` skips the calling test when the binary is missing, except in CI
(``CI=true``), where a missing binary is a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from ports import free_port

STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


class PromQLError(Exception):
    """Prometheus refused a query (``status: error``): bad syntax, unknown function, wrong types."""


class PrometheusStartError(RuntimeError):
    """Prometheus did not become ready; the message carries the tail of its log."""


def require_tool(name: str) -> str:
    """The path of ``name`` (``prometheus``, ``promtool``); skip the test if missing, fail under CI."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)
    if path is None:
        message = f"{name} is not installed (Debian: apt-get install prometheus)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI=true requires it")
        pytest.skip(message)
    return path


def promtool_check_metrics(exposition: bytes) -> subprocess.CompletedProcess[str]:
    """Run ``promtool check metrics`` on an exposition; returncode 0 means it passed (output says why
    not otherwise)."""
    promtool = require_tool("promtool")
    return subprocess.run(
        [promtool, "check", "metrics"],
        input=exposition.decode(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _config(targets: Sequence[str], scrape_interval: str, metrics_path: str, key: str | None) -> str:
    target_list = ", ".join(f'"{t}"' for t in targets)
    # the gateway's data port answers /metrics to a key, with the series of that key's models
    authorization = f"    authorization:\n      credentials: {key}\n" if key else ""
    return (
        "global:\n"
        f"  scrape_interval: {scrape_interval}\n"
        f"  evaluation_interval: {scrape_interval}\n"
        "scrape_configs:\n"
        "  - job_name: bundlegate\n"
        f"    scrape_interval: {scrape_interval}\n"
        f"    scrape_timeout: {scrape_interval}\n"
        f"    metrics_path: {metrics_path}\n"
        f"{authorization}"
        "    static_configs:\n"
        f"      - targets: [{target_list}]\n"
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)


def _log_tail(log: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return ""


@contextlib.contextmanager
def running_prometheus(
    targets: Sequence[str],
    *,
    scrape_interval: str = "1s",
    metrics_path: str = "/metrics",
    key: str | None = None,
) -> Iterator[str]:
    """Run Prometheus on 127.0.0.1 (a free port, storage in a temp dir) scraping ``targets``
    (``host:port``) every ``scrape_interval``, with ``key`` as its bearer credentials; yield its base
    URL; stop it with SIGTERM and a bounded wait. Raises ``PrometheusStartError`` if it is not ready
    within 30 s."""
    binary = require_tool("prometheus")
    with tempfile.TemporaryDirectory(prefix="bundlegate-prom-") as tmp:
        workdir = Path(tmp)
        config = workdir / "prometheus.yml"
        config.write_text(_config(targets, scrape_interval, metrics_path, key))
        log = workdir / "prometheus.log"
        last_error = ""
        for _attempt in range(3):  # a free port can be taken between probing and binding it
            port = free_port()
            base_url = f"http://127.0.0.1:{port}"
            with log.open("wb") as log_file:
                proc = subprocess.Popen(
                    [
                        binary,
                        f"--config.file={config}",
                        f"--storage.tsdb.path={workdir / 'data'}",
                        f"--web.listen-address=127.0.0.1:{port}",
                        "--log.level=warn",
                    ],
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    cwd=workdir,
                )
            try:
                if _wait_ready(proc, base_url):
                    yield base_url
                    return
                last_error = _log_tail(log)
            finally:
                _stop(proc)
        raise PrometheusStartError(f"prometheus did not become ready:\n{last_error}")


def _wait_ready(proc: subprocess.Popen[bytes], base_url: str) -> bool:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/-/ready", timeout=2).status_code == 200:
                return True
        time.sleep(0.2)
    return False


def query(base_url: str, promql: str, *, at: float | None = None) -> Any:
    """Evaluate ``promql`` as an instant query; return ``data.result``. Raises ``PromQLError`` when
    Prometheus rejects the expression."""
    params = {"query": promql}
    if at is not None:
        params["time"] = str(at)
    response = httpx.get(f"{base_url}/api/v1/query", params=params, timeout=10)
    body = response.json()
    if body.get("status") != "success":
        raise PromQLError(
            f"{body.get('errorType', 'error')}: {body.get('error', response.text)} in {promql!r}"
        )
    return body["data"]["result"]


def query_range(base_url: str, promql: str, *, start: float, end: float, step: float = 1.0) -> Any:
    """Evaluate ``promql`` over ``[start, end]`` (a dashboard panel's query); ``data.result`` (a matrix)."""
    params = {"query": promql, "start": str(start), "end": str(end), "step": str(step)}
    response = httpx.get(f"{base_url}/api/v1/query_range", params=params, timeout=10)
    body = response.json()
    if body.get("status") != "success":
        raise PromQLError(
            f"{body.get('errorType', 'error')}: {body.get('error', response.text)} in {promql!r}"
        )
    return body["data"]["result"]


def wait_for_result(
    base_url: str,
    promql: str,
    *,
    timeout_s: float = 60.0,
    accept: Callable[[Any], bool] = bool,
    interval_s: float = 0.5,
) -> Any:
    """Poll ``promql`` until ``accept(result)`` (default: a non-empty result) or ``timeout_s`` passes
    (then ``AssertionError`` naming the expression and the last result)."""
    deadline = time.monotonic() + timeout_s
    result: Any = None
    while True:
        result = query(base_url, promql)
        if accept(result):
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"no acceptable result for {promql!r} within {timeout_s:.0f} s: {result!r}")
        time.sleep(interval_s)


def scrape_targets(base_url: str) -> list[dict[str, Any]]:
    """Prometheus' view of its targets (``health``, ``lastError``, ``scrapeUrl``), for failure messages."""
    body = httpx.get(f"{base_url}/api/v1/targets", timeout=10).json()
    active: list[dict[str, Any]] = body["data"]["activeTargets"]
    return active
