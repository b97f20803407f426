"""Operations endpoints, the lifecycle (background loading, readiness, drain), request ids, the JSON
lines access log and the request metrics, in-process."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support import Keys, MakeApp, client_for, slow_down

from bundlegate.http.app import create_app
from bundlegate.settings import InvalidSetting, Settings

GOOD = {"inputs": [5.1, 3.5, 1.4, 0.2]}
PREDICT = "/v1/models/iris/predict"


async def test_healthz_answers_at_once_and_readyz_turns_ready_when_loading_ends(
    make_app: MakeApp, keys: Keys
) -> None:
    app = await make_app(wait=False)
    async with client_for(app) as client:
        assert (await client.get("/healthz")).status_code == 200
        early = await client.get("/readyz")
        if not app.state.loading_done:  # loading runs in threads; usually still going here
            assert early.status_code == 503
            assert early.json()["error"]["code"] == "unavailable"
            assert early.headers["retry-after"] == "1"
        await app.loaded()
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready"}
        # a bundle that failed does not hold readiness back
        models = (await client.get("/v1/models", headers=keys.auth())).json()["models"]
        assert {m["name"]: m["versions"][0]["state"] for m in models}["broken"] == "failed"


@pytest.mark.parametrize("loaded_when_listening", [False, True], ids=["one-process", "worker"])
async def test_a_workers_startup_ends_only_once_its_bundles_are_loaded(
    loaded_when_listening: bool,
    repo: Path,
    keys: Keys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """uvicorn listens once the ASGI lifespan startup completes. One process completes it at once
    (``/healthz`` answers while the bundles load); a worker of ``--workers N`` (``listen_after_load``)
    only once every bundle has loaded or failed, since the kernel may hand it any new connection."""
    monkeypatch.setenv("BUNDLEGATE_REPOSITORY", str(repo))
    monkeypatch.setenv("BUNDLEGATE_KEYS_FILE", str(keys.path))
    app = create_app(listen_after_load=loaded_when_listening)
    messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: list[tuple[str, bool]] = []
    answered = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        sent.append((message["type"], app.state.loading_done))
        answered.set()

    await messages.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(app({"type": "lifespan"}, messages.get, send))
    await asyncio.wait_for(answered.wait(), timeout=60)
    assert sent == [("lifespan.startup.complete", loaded_when_listening)]
    await app.loaded()
    async with client_for(app) as client:
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.post(PREDICT, json=GOOD, headers=keys.auth())).status_code == 200
    await messages.put({"type": "lifespan.shutdown"})
    await lifespan
    assert sent[-1] == ("lifespan.shutdown.complete", True)


async def test_readyz_is_503_before_startup_and_after_shutdown(make_app: MakeApp, keys: Keys) -> None:
    app = await make_app()
    async with client_for(app) as client:
        assert (await client.get("/readyz")).status_code == 200
        await app.shutdown()
        assert (await client.get("/readyz")).status_code == 503
        assert (await client.get("/v2/health/ready")).status_code == 503
        assert (await client.get("/healthz")).status_code == 200
        r = await client.post(PREDICT, json=GOOD, headers=keys.auth())
        assert r.status_code == 503


async def test_shutdown_waits_for_requests_in_flight(make_app: MakeApp, keys: Keys) -> None:
    app = await make_app()
    slow_down(app, "iris", 0.3)
    async with client_for(app) as client:
        pending = asyncio.create_task(client.post(PREDICT, json=GOOD, headers=keys.auth()))
        await asyncio.sleep(0.05)
        assert app.state.in_flight == 1
        await app.shutdown()
        assert pending.done()
        assert (await pending).status_code == 200


async def test_lifespan_protocol_runs_startup_and_shutdown(repo: Any, keys: Keys) -> None:
    app = create_app(Settings(repository=repo, keys_file=keys.path, access_log=False))
    sent: list[dict[str, Any]] = []
    messages = asyncio.Queue[dict[str, Any]]()
    await messages.put({"type": "lifespan.startup"})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "lifespan.startup.complete":
            await app.loaded()
            await messages.put({"type": "lifespan.shutdown"})

    await asyncio.wait_for(app({"type": "lifespan"}, messages.get, send), timeout=30)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert app.state.draining


def test_create_app_refuses_to_start_without_keys(repo: Any) -> None:
    with pytest.raises(InvalidSetting) as info:
        create_app(Settings(repository=repo))
    assert "--keys" in info.value.message
    assert create_app(Settings(repository=repo, insecure_no_auth=True)).ctx.auth.insecure


def test_create_app_reads_the_environment(monkeypatch: pytest.MonkeyPatch, repo: Any, keys: Keys) -> None:
    monkeypatch.setenv("BUNDLEGATE_REPOSITORY", str(repo))
    monkeypatch.setenv("BUNDLEGATE_KEYS_FILE", str(keys.path))
    monkeypatch.setenv("BUNDLEGATE_MAX_BODY_BYTES", "4096")
    app = create_app()
    assert app.settings.max_body_bytes == 4096
    assert app.ctx.registry.repo == repo


async def test_insecure_mode_serves_loopback_clients_only(make_app: MakeApp) -> None:
    app = await make_app(keys_file=None, insecure_no_auth=True)
    async with client_for(app) as client:
        r = await client.post(PREDICT, json=GOOD)
        assert r.status_code == 200
    remote = httpx.ASGITransport(app=app, client=("10.1.2.3", 40000))
    async with httpx.AsyncClient(transport=remote, base_url="http://gateway.test") as client:
        r = await client.post(PREDICT, json=GOOD)
        assert r.status_code == 401
        assert "loopback" in r.json()["error"]["message"]
        assert (await client.get("/healthz")).status_code == 200


# ----------------------------------------------------------------------------- request ids


async def test_request_id_is_echoed_when_sane_and_made_otherwise(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    r = await client.post(PREDICT, json=GOOD, headers=keys.auth() | {"X-Request-ID": "abc-123_X.9"})
    assert r.headers["x-request-id"] == "abc-123_X.9"
    assert r.json()["request_id"] == "abc-123_X.9"
    for insane in ("x" * 65, "a b", "\xe4".encode("latin-1"), "<script>", ""):
        r = await client.get("/healthz", headers={"X-Request-ID": insane})
        assert r.headers["x-request-id"] != insane
        assert 0 < len(r.headers["x-request-id"]) <= 64
    ids = {(await client.get("/healthz")).headers["x-request-id"] for _ in range(20)}
    assert len(ids) == 20
    for path in ("/nowhere", "/metrics", "/readyz"):  # answers and errors alike
        assert (await client.get(path)).headers["x-request-id"]


# ----------------------------------------------------------------------------- access log


async def test_access_log_is_json_lines_with_route_template_and_key_id(
    make_app: MakeApp, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    async with client_for(await make_app(access_log=True)) as client:
        capsys.readouterr()
        await client.post(PREDICT, json=GOOD, headers=keys.auth() | {"X-Request-ID": "log-1"})
        await client.post("/v1/models/secret-name/predict", json=GOOD, headers=keys.auth())
        await client.post(PREDICT, json=GOOD, headers={"Authorization": "Bearer bg_wrong-key"})
        await asyncio.sleep(0)  # lines are written at the end of the loop iteration
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    assert len(lines) == 3
    first = lines[0]
    assert set(first) >= {
        "ts",
        "request_id",
        "method",
        "path",
        "status",
        "duration_ms",
        "model",
        "version",
        "key_id",
    }
    assert first["request_id"] == "log-1"
    assert (first["method"], first["path"], first["status"]) == ("POST", "/v1/models/{name}/predict", 200)
    assert (first["model"], first["version"], first["key_id"]) == ("iris", 2, "web-shop")
    assert first["ts"].endswith("Z")
    assert first["duration_ms"] >= 0
    assert lines[1]["model"] is None  # a name that is not a model never reaches the log
    assert lines[1]["status"] == 404
    assert lines[2]["key_id"] is None
    assert lines[2]["error"] == "unauthenticated"
    everything = json.dumps(lines)
    for key in (keys.all, "bg_wrong-key", "secret-name"):
        assert key not in everything


# ----------------------------------------------------------------------------- metrics


def sample(exposition: str, name: str, **labels: str) -> float | None:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in exposition.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    del wanted
    return None


async def test_metrics_count_requests_per_model(client: httpx.AsyncClient, keys: Keys) -> None:
    for _ in range(3):
        assert (await client.post(PREDICT, json=GOOD, headers=keys.auth())).status_code == 200
    await client.post("/v1/models/made-up-name/predict", json=GOOD, headers=keys.auth())
    await client.post(PREDICT, json={"inputs": [1]}, headers=keys.auth())
    r = await client.get("/metrics", headers=keys.auth())
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    labels = {"model": "iris", "version": "2", "endpoint": "v1_predict"}
    assert sample(text, "bundlegate_requests_total", **labels, code="200") == 3
    assert sample(text, "bundlegate_requests_total", **labels, code="422") == 1
    assert (
        sample(text, "bundlegate_requests_total", model="-", version="-", endpoint="v1_predict", code="404")
        == 1
    )
    assert (
        sample(text, "bundlegate_request_errors_total", model="iris", version="2", reason="invalid_input")
        == 1
    )
    assert sample(text, "bundlegate_rows_predicted_total", model="iris", version="2") == 3
    assert sample(text, "bundlegate_models", state="loaded") == 5
    assert sample(text, "bundlegate_models", state="failed") == 1
    assert sample(text, "bundlegate_model_info", model="iris", version="2", default="true") == 1
    assert "made-up-name" not in text
    assert sample(text, "bundlegate_model_load_duration_seconds", model="iris", version="1") is not None


async def test_data_port_metrics_name_only_the_models_of_the_key(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    """Without a key the data port's /metrics is 401, like every model endpoint; with one it holds
    only the series of the models that key may see (a hidden model stays hidden, as its 404 does)."""
    assert (await client.post(PREDICT, json=GOOD, headers=keys.auth())).status_code == 200
    anonymous = await client.get("/metrics")
    assert anonymous.status_code == 401
    assert b"iris" not in anonymous.content
    everything = (await client.get("/metrics", headers=keys.auth())).text
    only_iris = (await client.get("/metrics", headers=keys.auth(keys.iris))).text
    others = {m for m in re.findall(r'model="([^"]+)"', everything)} - {"-", "iris"}
    assert others  # the all-models key sees other models
    assert set(re.findall(r'model="([^"]+)"', only_iris)) <= {"-", "iris"}
    assert sample(only_iris, "bundlegate_rows_predicted_total", model="iris", version="2") == 1
    assert sample(only_iris, "bundlegate_models", state="loaded") == 5  # no model named: kept
    assert "# TYPE bundlegate_requests_total counter" in only_iris


async def test_rejections_are_counted_by_reason(make_app: MakeApp, keys: Keys) -> None:
    async with client_for(await make_app(rate_limit_rps=0.01)) as client:
        await client.post(PREDICT, json=GOOD, headers=keys.auth())
        await client.post(PREDICT, json=GOOD, headers=keys.auth())
        await client.post("/v1/models/broken/predict", json=GOOD, headers=keys.auth(keys.iris))
        await client.post("/v1/models/broken/predict", json=GOOD, headers=keys.auth(keys.admin))
        text = (await client.get("/metrics", headers=keys.auth())).text  # a scrape is not rate limited
    assert sample(text, "bundlegate_rejected_requests_total", reason="rate_limited") == 1
    assert sample(text, "bundlegate_rejected_requests_total", reason="model_not_ready") == 1


async def test_a_metrics_port_serves_the_metrics_and_the_data_port_no_longer_does(
    make_app: MakeApp, keys: Keys
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = await make_app(metrics_port=port)
    async with client_for(app) as client:
        assert (await client.post(PREDICT, json=GOOD, headers=keys.auth())).status_code == 200
        data_port = await client.get("/metrics")
    assert data_port.status_code == 404
    assert b"iris" not in data_port.content
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as scraper:
        scraped = await scraper.get("/metrics")
        elsewhere = await scraper.get("/v1/models")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    assert (
        sample(
            scraped.text,
            "bundlegate_requests_total",
            model="iris",
            version="2",
            endpoint="v1_predict",
            code="200",
        )
        == 1
    )
    assert elsewhere.status_code == 404
    await app.shutdown()
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as scraper:
            await scraper.get("/metrics")


async def test_a_bundle_that_fails_at_startup_is_logged_once(
    make_app: MakeApp, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="bundlegate"):
        await make_app()  # the repository's "broken" bundle has a tampered model file
    about_broken = [r.getMessage() for r in caplog.records if "broken version 1" in r.getMessage()]
    assert len(about_broken) == 1, about_broken
    assert "failed to load" in about_broken[0]
