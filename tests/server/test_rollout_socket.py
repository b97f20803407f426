"""Rolling models out over a real socket, under steady load, with zero failed requests: an alias
switch, a 90/10 canary, sticky routing keys, a shadow, 50 bundles under a memory budget, SIGHUP in one
process, a served model's directory removed, and SIGTERM with a drain delay."""

from __future__ import annotations

import json
import math
import shutil
import signal
import socket
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from rollout_support import SteadyLoad, forest, forest_bundle, metric
from test_serve_socket import serve

import bundle_factory as bf

pytestmark = [pytest.mark.socket, pytest.mark.slow]

ROWS = bf.iris_model().X
OPEN = ("--insecure-no-auth",)


def _record(i: int) -> dict[str, object]:
    return {"inputs": dict(zip(bf.IRIS_FEATURES, ROWS[i % len(ROWS)].tolist(), strict=True))}


def _serving(repo: Path, name: str, config: dict[str, object]) -> None:
    (repo / name / "serving.json").write_text(json.dumps(config))


def _eventually(check: object, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    pytest.fail(f"not true after {seconds}s: {check}")


@pytest.fixture
def two_irises(tmp_path: Path) -> Path:
    """iris 1 and iris 2: two logistic regressions that answer about 5% of the rows differently."""
    repo = tmp_path / "bundles"
    repo.mkdir()
    bf.write(repo, bf.iris_model())
    bf.write(repo, bf.with_version(bf.iris_model(c=0.02), 2))
    return repo


def test_an_alias_switches_on_sighup_in_one_process_while_answering(two_irises: Path, tmp_path: Path) -> None:
    _serving(two_irises, "iris", {"aliases": {"champion": 1, "challenger": 2}})
    with serve(tmp_path, str(two_irises), *OPEN) as server:
        described = httpx.get(server.url + "/v1/models/iris").json()
        assert described["aliases"] == {"champion": 1, "challenger": 2}

        def champion(client: httpx.Client, i: int) -> httpx.Response:
            return client.post("/v1/models/iris/aliases/champion/predict", json=_record(i))

        with SteadyLoad(server.url, champion) as load:
            load.wait_for(100)
            _serving(two_irises, "iris", {"aliases": {"champion": 2}})
            server.process.send_signal(signal.SIGHUP)
            _eventually(lambda: load.answers and load.answers[-1].version == "2")
            seen = len(load.answers)
            load.wait_for(seen + 100)
        assert server.process.poll() is None  # SIGHUP re-scans; it does not stop the server
        assert load.failures == []
        versions = [a.version for a in load.answers]
        switch = versions.index("2")
        assert set(versions[:switch]) == {"1"}
        assert set(versions[switch + 20 :]) == {"2"}
        gone = httpx.post(server.url + "/v1/models/iris/aliases/challenger/predict", json=_record(0))
        assert gone.status_code == 404  # the alias left serving.json
        assert "SIGHUP" in server.stderr()


def test_a_90_10_canary_and_sticky_routing_keys(two_irises: Path, tmp_path: Path) -> None:
    _serving(two_irises, "iris", {"traffic": {"1": 90, "2": 10}})
    with serve(tmp_path, str(two_irises), *OPEN) as server:

        def unkeyed(client: httpx.Client, i: int) -> httpx.Response:
            return client.post("/v1/models/iris/predict", json=_record(i))

        with SteadyLoad(server.url, unkeyed, threads=4, max_requests=2000) as load:
            load.wait_for(2000)
        assert load.failures == []
        assert len(load.answers) == 2000
        share = Counter(a.version for a in load.answers)["2"] / 2000
        assert 0.07 <= share <= 0.13

        def keyed(client: httpx.Client, i: int) -> httpx.Response:
            key = f"customer-{i % 300}"
            r = client.post("/v1/models/iris/predict", json=_record(i), headers={"X-Routing-Key": key})
            r.headers["x-test-key"] = key
            return r

        by_key: dict[int, set[str | None]] = {}
        with httpx.Client(base_url=server.url) as client:
            for i in range(900):
                r = keyed(client, i)
                assert r.status_code == 200
                by_key.setdefault(i % 300, set()).add(r.headers["x-model-version"])
        assert all(len(v) == 1 for v in by_key.values())  # a key always lands on one version
        keyed_share = sum(v == {"2"} for v in by_key.values()) / 300
        assert 0.03 <= keyed_share <= 0.2  # and the keys split about 90/10 too


def test_a_shadow_is_scored_while_answers_come_from_the_default(two_irises: Path, tmp_path: Path) -> None:
    _serving(two_irises, "iris", {"default_version": 1, "shadow": {"version": 2, "sample": 1.0}})
    v1, v2 = bf.iris_model().estimator, bf.iris_model(c=0.02).estimator
    n = 600
    with serve(tmp_path, str(two_irises), *OPEN) as server:

        def predict(client: httpx.Client, i: int) -> httpx.Response:
            return client.post("/v1/models/iris/predict", json=_record(i))

        with SteadyLoad(server.url, predict, threads=3, max_requests=n) as load:
            load.wait_for(n)
        assert load.failures == []
        assert {a.version for a in load.answers} == {"1"}
        labels = v1.predict(ROWS[[a.index % len(ROWS) for a in load.answers]])
        assert [a.body["prediction"] for a in load.answers] == labels.tolist()

        def scored() -> float:
            text = httpx.get(server.url + "/metrics").text
            agree = metric(text, "bundlegate_shadow_rows_total", model="iris", version="2", result="agree")
            disagree = metric(
                text, "bundlegate_shadow_rows_total", model="iris", version="2", result="disagree"
            )
            return (agree or 0) + (disagree or 0)

        _eventually(lambda: scored() == n)
        text = httpx.get(server.url + "/metrics").text
        rows = ROWS[[i % len(ROWS) for i in range(n)]]
        expected = float((v1.predict(rows) == v2.predict(rows)).mean())
        assert 0 < expected < 1
        ratio = metric(text, "bundlegate_shadow_agreement_ratio", model="iris", version="2")
        assert ratio == pytest.approx(expected)
        assert metric(text, "bundlegate_shadow_duration_seconds_count", model="iris", version="2") == n


def test_fifty_bundles_under_a_budget_that_fits_ten(tmp_path: Path) -> None:
    repo = tmp_path / "bundles"
    repo.mkdir()
    names = [f"forest-{i:02d}" for i in range(50)]
    for name in names:
        bf.write(repo, forest_bundle(name))
    size_mb = sum(f.stat().st_size for f in (repo / names[0] / "1").iterdir()) / 2**20
    budget_mb = math.ceil(10 * size_mb)
    assert int(budget_mb // size_mb) == 10
    _, clf, X = forest()
    expected = clf.predict(X[:150])
    with serve(tmp_path, str(repo), *OPEN, "--lazy", "--memory-budget-mb", str(budget_mb)) as server:

        def any_model(client: httpx.Client, i: int) -> httpx.Response:
            name = names[(i * 7) % 50]
            r = client.post(f"/v1/models/{name}/predict", json={"inputs": X[i % 150].tolist()})
            if r.status_code == 200:
                assert r.json()["prediction"] == f"{name}-{expected[i % 150]}"
            return r

        resident: list[float] = []
        with SteadyLoad(server.url, any_model, threads=3, max_requests=300) as load:
            while any(w.is_alive() for w in load._workers):
                text = httpx.get(server.url + "/metrics").text
                resident.append(metric(text, "bundlegate_resident_model_bytes") or 0.0)
                time.sleep(0.1)
        assert load.failures == []
        assert len(load.answers) == 300
        assert max(resident) <= budget_mb * 2**20
        models = httpx.get(server.url + "/v1/models").json()["models"]
        loaded = [m for m in models for v in m["versions"] if v["state"] == "loaded"]
        assert 1 <= len(loaded) <= 10
        text = httpx.get(server.url + "/metrics").text
        evicted = sum(
            metric(text, "bundlegate_model_evictions_total", model=n, version="1") or 0 for n in names
        )
        assert evicted >= 40


def test_removing_a_served_model_directory_keeps_it_serving(two_irises: Path, tmp_path: Path) -> None:
    with serve(tmp_path, str(two_irises), *OPEN, "--reload-interval-s", "0.2") as server:

        def predict(client: httpx.Client, i: int) -> httpx.Response:
            return client.post("/v1/models/iris/predict", json=_record(i))

        def missing() -> list[int]:
            versions = httpx.get(server.url + "/v1/models/iris").json()["versions"]
            return [v["version"] for v in versions if v.get("warning") == "missing on disk"]

        with SteadyLoad(server.url, predict) as load:
            load.wait_for(50)
            # rm -rf is not atomic: a re-scan may see version 1 on disk and the default, 2, gone
            shutil.rmtree(two_irises / "iris" / "2")
            _eventually(lambda: missing() == [2])
            seen = len(load.answers)
            load.wait_for(seen + 100)
            shutil.rmtree(two_irises / "iris")
            _eventually(lambda: missing() == [1, 2])
            seen = len(load.answers)
            load.wait_for(seen + 100)
        assert load.failures == []
        assert {a.version for a in load.answers} == {"2"}
        assert httpx.get(server.url + "/readyz").status_code == 200


def _held_request(port: int, body: bytes) -> socket.socket:
    """A predict request sent but for its last body byte: in flight until ``socket.sendall(body[-1:])``."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (
        f"POST /v1/models/iris/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body[:-1])
    return sock


def _listener_closed(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_turns_unready_and_keeps_answering_for_the_drain_delay(
    two_irises: Path, tmp_path: Path
) -> None:
    with serve(tmp_path, str(two_irises), *OPEN, "--drain-delay-s", "3") as server:

        def predict(client: httpx.Client, i: int) -> httpx.Response:
            return client.post("/v1/models/iris/predict", json=_record(i))

        body = json.dumps(_record(0)).encode()
        with SteadyLoad(server.url, predict) as load:
            load.wait_for(50)
            held = _held_request(server.port, body)
            server.process.send_signal(signal.SIGTERM)
            _eventually(lambda: "closing the listener in 3.0 s" in server.stderr())
            noticed = time.monotonic()  # the delay started before this: 3 s from then at the latest
            assert httpx.get(server.url + "/readyz").status_code == 503  # new connections still accepted
            before = len(load.answers)
            while time.monotonic() - noticed < 1.0:  # a load balancer takes a moment to notice
                time.sleep(0.05)
            load.stop()
        assert load.failures == []  # every request sent during the delay is answered
        assert len(load.answers) > before
        _eventually(lambda: _listener_closed(server.port), seconds=30)
        with held:  # in flight when the listener closed: answered all the same
            held.sendall(body[-1:])
            answer = held.makefile("rb").read()
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert (
            json.loads(answer.partition(b"\r\n\r\n")[2])["prediction"]
            == bf.iris_model().estimator.predict(ROWS[:1])[0]
        )
        server.process.wait(timeout=30)
