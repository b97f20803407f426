"""Real sockets: a real Prometheus scraping a real gateway (``bundle serve`` on 127.0.0.1), and the
metrics of a multi-worker gateway adding up.

Traffic goes to the iris bundle while Prometheus scrapes every second; the test then asks Prometheus'
HTTP API what a dashboard would ask: the request counter and the p99 latency from the histogram. The
Prometheus tests skip without the prometheus binary unless ``CI=true``.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bundlegate.keys import create_key, revoke_key
from prometheus_server import (
    PromQLError,
    free_port,
    query,
    require_tool,
    running_prometheus,
    scrape_targets,
    wait_for_result,
)

pytestmark = [pytest.mark.slow, pytest.mark.socket]

REPO_BUNDLES = Path(__file__).resolve().parent.parent / "bundles"
GATEWAY_START_TIMEOUT_S = 60.0
P99 = "histogram_quantile(0.99, sum by (le) (rate(bundlegate_request_duration_seconds_bucket[1m])))"
# Positional: the example bundle and the test factory may name the four features differently.
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]


def _iris_repository(target: Path) -> Path:
    """A repository holding only the iris bundle: the example from bundles/ when it is built, else one
    fitted and packed here."""
    repo = target / "repo"
    example = REPO_BUNDLES / "iris"
    if any(example.glob("*/bundle.json")):
        shutil.copytree(example, repo / "iris")
    else:
        from bundle_factory import iris_model, write

        write(repo, iris_model())
    return repo


@contextlib.contextmanager
def running_gateway(repo: Path, keys_file: Path, log: Path, *extra_args: str) -> Iterator[str]:
    """``bundle serve`` on 127.0.0.1 and a free port, output to ``log``; yields its base URL once /readyz
    answers 200."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable,
        "-m",
        "bundlegate.cli",
        "serve",
        str(repo),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--keys",
        str(keys_file),
        "--drain-timeout-s",
        "2",
        *extra_args,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUNDLEGATE_")}
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=log.parent)
    try:
        deadline = time.monotonic() + GATEWAY_START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"bundle serve exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"bundle serve not ready within 60 s:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield base_url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def _send_traffic(client: httpx.Client, n: int) -> None:
    for _ in range(n):
        response = client.post("/v1/models/iris/predict", json={"inputs": IRIS_ROW})
        assert response.status_code == 200, response.text


def _finite(result: Any) -> bool:
    return bool(result) and all(math.isfinite(float(sample["value"][1])) for sample in result)


@dataclass(frozen=True)
class Gateway:
    url: str
    key: str
    log: Path
    keys_file: Path


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One ``bundle serve`` for the module, with a key for iris."""
    workdir = tmp_path_factory.mktemp("e2e")
    keys_file = workdir / "keys.json"
    key = create_key(keys_file, "e2e", ["iris"])
    log = workdir / "gateway.log"
    with running_gateway(_iris_repository(workdir), keys_file, log) as url:
        yield Gateway(url, key, log, keys_file)


@pytest.fixture(scope="module")
def prometheus(gateway: Gateway) -> Iterator[str]:
    """A Prometheus scraping ``gateway`` every second; its base URL."""
    require_tool("prometheus")
    target = gateway.url.removeprefix("http://")
    with running_prometheus([target], scrape_interval="1s", key=gateway.key) as url:
        yield url


def test_prometheus_sees_requests_and_latency_quantiles(gateway: Gateway, prometheus: str) -> None:
    key = gateway.key
    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=10) as client:
        _send_traffic(client, 20)
        # Unknown models and a request without a key: counted, but under model="-" only.
        for name in ("no-such-model", "credit", "x" * 60):
            assert client.post(f"/v1/models/{name}/predict", json={"inputs": IRIS_ROW}).status_code == 404
        no_key = httpx.post(f"{gateway.url}/v1/models/iris/predict", json={"inputs": IRIS_ROW})
        assert no_key.status_code == 401

        ok = 'bundlegate_requests_total{model="iris",endpoint="v1_predict",code="200"}'
        try:
            counted = wait_for_result(prometheus, ok, timeout_s=60)
            # rate() needs two scrapes with traffic between them: keep the gateway busy while polling.
            deadline = time.monotonic() + 60
            p99: Any = []
            while not _finite(p99):
                assert time.monotonic() < deadline, f"no finite p99 within 60 s: {p99!r}"
                _send_traffic(client, 5)
                time.sleep(0.5)
                p99 = query(prometheus, P99)
        except AssertionError as e:
            raise AssertionError(f"{e}\nscrape targets: {scrape_targets(prometheus)!r}") from None

    assert float(counted[0]["value"][1]) >= 20
    assert counted[0]["metric"]["version"] != "-"
    (quantile,) = p99
    assert 0 < float(quantile["value"][1]) <= 10.0

    models = {s["metric"]["model"] for s in query(prometheus, "bundlegate_requests_total")}
    assert models <= {"iris", "-"}
    assert query(prometheus, 'bundlegate_requests_total{model="-",code="404"}')
    assert query(prometheus, 'bundlegate_model_info{model="iris"} == 1')

    # The access log names the key id, never the key.
    log = gateway.log.read_text(errors="replace")
    assert '"e2e"' in log
    assert key not in log


def test_a_revoked_key_is_refused_by_the_running_gateway_within_seconds(gateway: Gateway) -> None:
    key = create_key(gateway.keys_file, "short-lived", ["iris"])
    url = f"{gateway.url}/v1/models/iris/predict"

    def status() -> int:
        return httpx.post(url, json={"inputs": IRIS_ROW}, headers={"X-API-Key": key}, timeout=10).status_code

    deadline = time.monotonic() + 5
    while status() != 200:  # picked up within about a second, without a restart
        assert time.monotonic() < deadline, "a new key was not accepted within 5 s"
        time.sleep(0.2)
    revoke_key(gateway.keys_file, "short-lived")
    revoked_at = time.monotonic()
    while status() != 401:
        assert time.monotonic() - revoked_at < 5, "a revoked key still worked after 5 s"
        time.sleep(0.2)
    assert status() == 401


def test_query_reports_promql_errors(prometheus: str) -> None:
    with pytest.raises(PromQLError, match="parse error"):
        query(prometheus, "sum(rate(bundlegate_requests_total[1m])")
    assert query(prometheus, "vector(1)")[0]["value"][1] == "1"


def test_counters_add_up_across_workers(tmp_path: Path) -> None:
    """``bundle serve --workers 2``: whichever worker answers /metrics, it reports every worker's requests."""
    keys_file = tmp_path / "keys.json"
    key = create_key(keys_file, "e2e", ["iris"])
    log = tmp_path / "gateway.log"
    with running_gateway(_iris_repository(tmp_path), keys_file, log, "--workers", "2") as gateway:
        # /readyz answered from one worker; the other may still be loading (503), so count successes.
        answered, deadline = 0, time.monotonic() + 30
        while answered < 30:
            assert time.monotonic() < deadline, f"only {answered} of 30 predictions answered within 30 s"
            # A new connection each time, so both workers get some.
            response = httpx.post(
                f"{gateway}/v1/models/iris/predict", json={"inputs": IRIS_ROW}, headers={"X-API-Key": key}
            )
            assert response.status_code in (200, 503), response.text
            answered += response.status_code == 200
        loaded_seen: set[float] = set()
        for _ in range(6):
            families = {
                f.name: f
                for f in text_string_to_metric_families(
                    httpx.get(f"{gateway}/metrics", headers={"X-API-Key": key}, timeout=10).text
                )
            }
            ok = [
                s.value
                for s in families["bundlegate_requests"].samples
                if s.name == "bundlegate_requests_total"
                and s.labels["model"] == "iris"
                and s.labels["code"] == "200"
            ]
            assert ok == [30]
            loaded_seen |= {
                s.value for s in families["bundlegate_models"].samples if s.labels["state"] == "loaded"
            }
        # One model version is loaded (in every worker): the gauge says 1, never 2.
        assert max(loaded_seen) == 1


def test_a_missing_binary_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require_tool("prometheus-not-installed")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_tool("prometheus-not-installed")
