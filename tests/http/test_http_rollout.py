"""Aliases, the routed default, readiness that means something and the admin load, in-process."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from gateway_support import Keys, MakeApp, client_for
from starlette.types import Receive, Scope, Send

import bundle_factory as bf
from bundlegate.http.routing import HotRoutes

IRIS = {"inputs": dict(zip(bf.IRIS_FEATURES, [5.1, 3.5, 1.4, 0.2], strict=True))}


def _repo(tmp_path: Path, serving: dict[str, object] | None = None) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    bf.write(repo, bf.iris_model())
    bf.write(repo, bf.with_version(bf.iris_model(), 2))
    if serving is not None:
        (repo / "iris" / "serving.json").write_text(json.dumps(serving))
    return repo


async def test_an_alias_answers_with_its_version_and_others_are_404(
    make_app: MakeApp, keys: Keys, tmp_path: Path
) -> None:
    repo = _repo(tmp_path, {"aliases": {"champion": 1}})
    app = await make_app(repository=repo)
    async with client_for(app) as client:
        r = await client.post("/v1/models/iris/aliases/champion/predict", json=IRIS, headers=keys.auth())
        assert r.status_code == 200
        assert r.headers["x-model-version"] == "1"
        assert r.json()["version"] == 1
        batch = {"inputs": [IRIS["inputs"]] * 2}
        r = await client.post(
            "/v1/models/iris/aliases/champion/predict/batch", json=batch, headers=keys.auth()
        )
        assert r.status_code == 200
        assert len(r.json()["predictions"]) == 2
        unknown = await client.post("/v1/models/iris/aliases/nope/predict", json=IRIS, headers=keys.auth())
        no_model = await client.post(
            "/v1/models/zzz/aliases/champion/predict", json=IRIS, headers=keys.auth()
        )
        assert unknown.status_code == no_model.status_code == 404
        assert unknown.json()["error"] == no_model.json()["error"]  # an alias is not a way to probe
        anonymous = await client.post("/v1/models/iris/aliases/champion/predict", json=IRIS)
        assert anonymous.status_code == 401
        described = (await client.get("/v1/models/iris", headers=keys.auth())).json()
        assert described["aliases"] == {"champion": 1}
        assert (await client.post("/v1/models/iris/predict", json=IRIS, headers=keys.auth())).headers[
            "x-model-version"
        ] == "2"


async def _readiness(client: httpx.AsyncClient) -> int:
    """/readyz's status, checked to be /v2/health/ready's too (one readiness, two protocols)."""
    ready, v2 = await client.get("/readyz"), await client.get("/v2/health/ready")
    assert ready.status_code == v2.status_code
    return ready.status_code


async def test_readyz_waits_for_required_models_and_for_one_that_loads(
    make_app: MakeApp, repo: Path, tmp_path: Path
) -> None:
    app = await make_app(require_models="iris,credit")
    async with client_for(app) as client:
        assert await _readiness(client) == 200
        app.stop_requested()  # SIGTERM with a drain delay
        assert await _readiness(client) == 503
    app = await make_app(require_models="iris,nope")
    async with client_for(app) as client:
        assert await _readiness(client) == 503
        r = await client.get("/readyz")
        assert "nope" in r.json()["error"]["message"]
    only_broken = tmp_path / "broken-only"
    only_broken.mkdir()
    broken = bf.write(only_broken, bf.iris_model())
    (broken / "model.onnx").write_bytes(b"corrupt")
    app = await make_app(repository=only_broken)
    async with client_for(app) as client:
        assert await _readiness(client) == 503  # its only bundle is broken
    empty = tmp_path / "empty"
    empty.mkdir()
    app = await make_app(repository=empty)
    async with client_for(app) as client:
        assert await _readiness(client) == 200  # nothing to load is not an error


async def test_the_admin_load_picks_up_a_model_that_appeared_on_disk(
    make_app: MakeApp, keys: Keys, tmp_path: Path
) -> None:
    repo = _repo(tmp_path)
    app = await make_app(repository=repo)
    async with client_for(app) as client:
        predict = "/v1/models/newcomer/predict"
        assert (await client.post(predict, json=IRIS, headers=keys.auth())).status_code == 404
        bf.write(repo, bf.with_version(bf.iris_model(), 1, name="newcomer"))
        load = "/v2/repository/models/newcomer/load"
        assert (await client.post(load, headers=keys.auth(keys.all))).status_code == 404  # admin only
        assert (await client.post(load, headers=keys.auth(keys.admin))).status_code == 200
        assert (await client.post(predict, json=IRIS, headers=keys.auth())).status_code == 200
        r = await client.post("/v2/repository/models/nothing/load", headers=keys.auth(keys.admin))
        assert r.status_code == 404


async def test_lazy_answers_the_first_request_after_loading(
    make_app: MakeApp, keys: Keys, tmp_path: Path
) -> None:
    repo = _repo(tmp_path)
    app = await make_app(repository=repo, lazy=True)
    async with client_for(app) as client:
        assert (await client.get("/readyz")).status_code == 200
        r = await client.post("/v1/models/iris/versions/1/predict", json=IRIS, headers=keys.auth())
        assert r.status_code == 200
        assert r.headers["x-model-version"] == "1"
        states = {
            v["version"]: v["state"]
            for v in (await client.get("/v1/models/iris", headers=keys.auth())).json()["versions"]
        }
        assert states == {1: "loaded", 2: "available"}
        metrics = (await client.get("/metrics", headers=keys.auth())).text
        assert 'bundlegate_model_loads_total{cold="true",model="iris",version="1"} 1.0' in metrics


async def test_a_refused_serving_json_shows_in_status_and_metrics_and_the_last_good_one_serves(
    make_app: MakeApp, keys: Keys, tmp_path: Path
) -> None:
    repo = _repo(tmp_path, {"default_version": 1})
    app = await make_app(repository=repo)
    async with client_for(app) as client:
        (repo / "iris" / "serving.json").write_text(json.dumps({"default_version": 2, "batch_size": 9}))
        await app.rescan()  # what SIGHUP does
        described = (await client.get("/v1/models/iris", headers=keys.auth())).json()
        assert "unknown key 'batch_size'" in described["error"]
        assert described["default_version"] == 1
        r = await client.post("/v1/models/iris/predict", json=IRIS, headers=keys.auth())
        assert r.headers["x-model-version"] == "1"
        metrics = (await client.get("/metrics", headers=keys.auth())).text
        assert 'bundlegate_serving_config_refused{model="iris"} 1.0' in metrics


async def test_a_lazy_split_route_loads_whichever_version_it_picks(
    make_app: MakeApp, keys: Keys, tmp_path: Path
) -> None:
    repo = _repo(tmp_path, {"traffic": {"1": 50, "2": 50}})
    app = await make_app(repository=repo, lazy=True)
    async with client_for(app) as client:
        answers = [
            await client.post("/v1/models/iris/predict", json=IRIS, headers=keys.auth()) for _ in range(40)
        ]
    assert [r.status_code for r in answers] == [200] * 40
    assert {r.headers["x-model-version"] for r in answers} == {"1", "2"}


async def test_lazy_models_are_described_before_their_first_request(
    make_app: MakeApp, keys: Keys, tmp_path: Path
) -> None:
    repo = _repo(tmp_path)
    app = await make_app(repository=repo, lazy=True)
    async with client_for(app) as client:
        described = (await client.get("/v1/models/iris", headers=keys.auth())).json()
        assert described["schema"]["version"] == 2
        assert [i["name"] for i in described["schema"]["inputs"]] == bf.IRIS_FEATURES
        paths = (await client.get("/openapi.json", headers=keys.auth())).json()["paths"]
        assert {"/v1/models/iris/predict", "/v1/models/iris/versions/1/predict"} <= set(paths)
        states = [
            v["state"] for v in (await client.get("/v1/models/iris", headers=keys.auth())).json()["versions"]
        ]
        assert states == ["available", "available"]  # describing loads nothing


async def test_an_alias_that_loads_its_version_counts_once_against_the_rate_limit(
    make_app: MakeApp, keys: Keys, tmp_path: Path
) -> None:
    repo = _repo(tmp_path, {"aliases": {"champion": 1}})
    app = await make_app(repository=repo, lazy=True, rate_limit_rps=0.01)  # one request, then 429
    async with client_for(app) as client:
        first = await client.post("/v1/models/iris/aliases/champion/predict", json=IRIS, headers=keys.auth())
        assert first.status_code == 200  # loaded version 1, then answered: one request
        second = await client.post("/v1/models/iris/aliases/champion/predict", json=IRIS, headers=keys.auth())
        assert second.status_code == 429


async def test_alias_routes_skip_the_regular_expression_router(
    make_app: MakeApp, keys: Keys, tmp_path: Path
) -> None:
    repo = _repo(tmp_path, {"aliases": {"champion": 1}})
    app = await make_app(repository=repo)
    hot = app._http.app
    assert isinstance(hot, HotRoutes)
    router = hot.fallback
    fell_through: list[str] = []

    async def fallback(scope: Scope, receive: Receive, send: Send) -> None:
        fell_through.append(scope["path"])
        await router(scope, receive, send)

    hot.fallback = fallback
    async with client_for(app) as client:
        for path in ["/v1/models/iris/aliases/champion/predict", "/v1/models/iris/versions/2/predict"]:
            r = await client.post(path, json=IRIS, headers=keys.auth())
            assert r.status_code == 200
        batch = {"inputs": [IRIS["inputs"]] * 2}
        r = await client.post(
            "/v1/models/iris/aliases/champion/predict/batch", json=batch, headers=keys.auth()
        )
        assert r.headers["x-model-version"] == "1"
        assert len(r.json()["predictions"]) == 2
        assert fell_through == []
        r = await client.post("/v1/models/iris/aliases/nope/predict", json=IRIS, headers=keys.auth())
        assert r.status_code == 404
        r = await client.get("/v1/models/iris", headers=keys.auth())
        assert r.status_code == 200
        assert fell_through == ["/v1/models/iris"]  # the rest still goes to the router


async def test_v2_metadata_is_the_default_version_and_infer_follows_the_split(
    make_app: MakeApp, keys: Keys, tmp_path: Path
) -> None:
    repo = _repo(tmp_path, {"traffic": {"1": 50, "2": 50}})
    app = await make_app(repository=repo)
    row = list(IRIS["inputs"].values())
    infer = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": row}]}
    async with client_for(app) as client:
        for _ in range(20):
            ready = await client.get("/v2/models/iris/ready", headers=keys.auth())
            assert ready.json()["version"] == "2"  # the default (the highest), not a draw
            metadata = await client.get("/v2/models/iris", headers=keys.auth())
            assert metadata.headers["x-model-version"] == "2"
        answers = [
            await client.post("/v2/models/iris/infer", json=infer, headers=keys.auth()) for _ in range(40)
        ]
    assert {r.json()["model_version"] for r in answers} == {"1", "2"}
