"""Every row of DESIGN.md §4's table, in-process: status, error code, the one body shape, the request id,
and a good request answered right after."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from gateway_support import Keys, MakeApp, client_for, slow_down

from bundlegate.feed import Feed, Prediction

GOOD = {"inputs": {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}}
PREDICT = "/v1/models/iris/predict"
BATCH = "/v1/models/iris/predict/batch"
JSON = {"Content-Type": "application/json"}


def assert_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    if r.request.url.path.startswith("/v2"):
        # the Open Inference Protocol's layout: "error" is the message; the same fields beside it
        assert set(body) == {"error", "code", "details", "request_id"}
        assert isinstance(body["error"], str)
        body = {"error": {**body, "message": body["error"]}, "request_id": body["request_id"]}
        del body["error"]["error"], body["error"]["request_id"]
    assert set(body) == {"error", "request_id"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], list)
    assert len(body["error"]["details"]) <= 20
    assert body["request_id"] == r.headers["x-request-id"]
    assert body["request_id"]
    return body


async def assert_still_serving(client: httpx.AsyncClient, keys: Keys) -> None:
    r = await client.post(PREDICT, json=GOOD, headers=keys.auth())
    assert r.status_code == 200, r.text
    assert r.json()["prediction"] == "setosa"


# ----------------------------------------------------------------------------- 400


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b'{"inputs": {"sepal_length": 5.1,', "malformed JSON"),
        (b'{"inputs": [NaN, 1, 2, 3]}', "malformed JSON"),
        (b'{"inputs": [Infinity, 1, 2, 3]}', "malformed JSON"),
        (b'{"inputs": [-Infinity, 1, 2, 3]}', "malformed JSON"),
        (b'{"inputs": [1, 2, 3, 4], "inputs": [1, 2, 3, 4]}', "duplicate key"),
        (
            b'{"inputs": {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, '
            b'"petal_width": 0.2, "sepal_length": 9}}',
            "duplicate key",
        ),
        (b"", "empty"),
        (b'{"inputs": "\xff\xfe"}', "malformed JSON"),
    ],
)
async def test_400_for_bodies_that_are_not_strict_json(
    client: httpx.AsyncClient, keys: Keys, raw: bytes, fragment: str
) -> None:
    r = await client.post(PREDICT, content=raw, headers=keys.auth() | JSON)
    body = assert_error(r, 400, "malformed_json")
    assert fragment in body["error"]["message"]
    await assert_still_serving(client, keys)


async def test_duplicate_keys_found_even_with_colons_inside_strings(make_app: MakeApp, keys: Keys) -> None:
    async with client_for(await make_app()) as client:
        # a colon inside a string makes the quick count inconclusive: the exact check decides
        ok = b'{"inputs": {"age": 30, "income": 50, "city": "Rome"}}'
        r = await client.post("/v1/models/credit/predict", content=ok, headers=keys.auth() | JSON)
        assert r.status_code == 200
        odd = b'{"inputs": {"age": 30, "income": 50, "city": "a:b"}}'
        r = await client.post("/v1/models/credit/predict", content=odd, headers=keys.auth() | JSON)
        assert r.status_code == 200  # an unknown city is allowed for this model
        dup = b'{"inputs": {"age": 30, "income": 50, "city": "a:b", "age": 31}}'
        r = await client.post("/v1/models/credit/predict", content=dup, headers=keys.auth() | JSON)
        assert_error(r, 400, "malformed_json")


async def test_400_for_nesting_deeper_than_the_limit(make_app: MakeApp, keys: Keys) -> None:
    async with client_for(await make_app(max_json_depth=4)) as client:
        deep = b'{"inputs": [[[[[1]]]]]}'
        body = assert_error(
            await client.post(BATCH, content=deep, headers=keys.auth() | JSON), 400, "malformed_json"
        )
        assert "deeper than 4" in body["error"]["message"]
        very_deep = b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}"
        assert_error(
            await client.post(BATCH, content=very_deep, headers=keys.auth() | JSON), 400, "malformed_json"
        )
        await assert_still_serving(client, keys)


# ----------------------------------------------------------------------------- 401


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer bg_not-a-key"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"X-API-Key": "bg_wrong"},
        {"Authorization": "Bearer " + "x" * 5000},
    ],
)
async def test_401_for_a_missing_or_unknown_key(
    client: httpx.AsyncClient, keys: Keys, headers: dict[str, str]
) -> None:
    r = await client.post(PREDICT, json=GOOD, headers=headers)
    body = assert_error(r, 401, "unauthenticated")
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert "bg_" not in body["error"]["message"]
    await assert_still_serving(client, keys)


async def test_the_key_is_never_taken_from_the_query_string(client: httpx.AsyncClient, keys: Keys) -> None:
    r = await client.post(PREDICT, params={"api_key": keys.all, "key": keys.all}, json=GOOD)
    assert_error(r, 401, "unauthenticated")


async def test_x_api_key_header_is_accepted(client: httpx.AsyncClient, keys: Keys) -> None:
    r = await client.post(PREDICT, json=GOOD, headers={"X-API-Key": keys.all})
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/models"), ("GET", "/v1/models/iris"), ("POST", BATCH), ("GET", "/v2/models/iris")],
)
async def test_every_model_endpoint_needs_a_key(client: httpx.AsyncClient, method: str, path: str) -> None:
    assert_error(await client.request(method, path, json=GOOD), 401, "unauthenticated")


async def test_a_revoked_key_stops_working(make_app: MakeApp, keys: Keys, tmp_path: Any) -> None:
    from bundlegate.keys import create_key, revoke_key

    path = tmp_path / "keys.json"
    key = create_key(path, "temp", ["*"])
    app = await make_app(keys_file=path)
    async with client_for(app) as client:
        assert (await client.post(PREDICT, json=GOOD, headers=keys.auth(key))).status_code == 200
        revoke_key(path, "temp")
        app.ctx.auth.store.reload_if_changed()  # type: ignore[union-attr]
        assert_error(await client.post(PREDICT, json=GOOD, headers=keys.auth(key)), 401, "unauthenticated")


# ----------------------------------------------------------------------------- 404 / 405


async def test_404_for_unknown_paths_with_the_error_body(client: httpx.AsyncClient, keys: Keys) -> None:
    for path in ("/", "/v1", "/v1/models/iris/explain", "/v3/models"):
        assert_error(await client.get(path, headers=keys.auth()), 404, "not_found")
    await assert_still_serving(client, keys)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models//predict",
        "/v1/models/iris/predict/",
        "/v1/models/iris/predict/batch/x",
        "/v1/models/iris/versions//predict",
        "/v1/models/iris/versions/1",
        "/v1/models/iris/version/1/predict",
        "/v1/model/iris/predict",
        "/v2/models/iris/infer/",
        "/v3/models/iris/infer",
        "/v1/models/iris/infer",
        "/x/v1/models/iris/predict",
    ],
)
async def test_404_for_paths_next_to_the_prediction_routes(
    client: httpx.AsyncClient, keys: Keys, path: str
) -> None:
    # matched by splitting the path (routing.HotRoutes), so the near misses are checked one by one
    assert_error(await client.post(path, json=GOOD, headers=keys.auth()), 404, "not_found")
    await assert_still_serving(client, keys)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", PREDICT, "POST"),
        ("PUT", BATCH, "POST"),
        ("DELETE", "/v1/models", "GET"),
        ("POST", "/healthz", "GET"),
        ("GET", "/v2/models/iris/infer", "POST"),
    ],
)
async def test_405_for_a_wrong_method(
    client: httpx.AsyncClient, keys: Keys, method: str, path: str, allow: str
) -> None:
    r = await client.request(method, path, headers=keys.auth())
    assert_error(r, 405, "method_not_allowed")
    assert allow in r.headers["allow"]
    await assert_still_serving(client, keys)


# ----------------------------------------------------------------------------- 413 / 415


async def test_413_when_content_length_passes_the_limit(make_app: MakeApp, keys: Keys) -> None:
    async with client_for(await make_app(max_body_bytes=2048)) as client:
        big = b'{"inputs": "' + b"x" * 4000 + b'"}'
        body = assert_error(
            await client.post(PREDICT, content=big, headers=keys.auth() | JSON), 413, "payload_too_large"
        )
        assert "2048" in body["error"]["message"]
        await assert_still_serving(client, keys)


async def test_413_for_a_streamed_body_stops_reading_early(make_app: MakeApp, keys: Keys) -> None:
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(1000):  # 1000 x 1 KiB, far over the limit
            sent.append(i)
            yield b" " * 1024

    async with client_for(await make_app(max_body_bytes=4096)) as client:
        r = await client.post(PREDICT, content=chunks(), headers=keys.auth() | JSON)
        assert "content-length" not in r.request.headers
        assert_error(r, 413, "payload_too_large")
        assert len(sent) < 1000
        await assert_still_serving(client, keys)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compressed_bodies_are_inflated_within_the_limit(
    make_app: MakeApp, keys: Keys, encoding: str
) -> None:
    import gzip
    import zlib

    compress = gzip.compress if encoding == "gzip" else zlib.compress
    async with client_for(await make_app(max_body_bytes=4096)) as client:
        headers = keys.auth() | JSON | {"Content-Encoding": encoding}
        r = await client.post(PREDICT, content=compress(json.dumps(GOOD).encode()), headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["prediction"] == "setosa"
        bomb = compress(b'{"inputs": "' + b"0" * 1_000_000 + b'"}')
        assert len(bomb) < 4096
        assert_error(await client.post(PREDICT, content=bomb, headers=headers), 413, "payload_too_large")
        broken = await client.post(PREDICT, content=b"not compressed", headers=headers)
        assert_error(broken, 400, "malformed_json")
        br = keys.auth() | JSON | {"Content-Encoding": "br"}
        assert_error(await client.post(PREDICT, json=GOOD, headers=br), 415, "unsupported_media_type")
        await assert_still_serving(client, keys)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_415_for_a_body_that_is_not_json(
    client: httpx.AsyncClient, keys: Keys, content_type: str | None
) -> None:
    headers = keys.auth() | ({"Content-Type": content_type} if content_type else {})
    r = await client.post(PREDICT, content=b'{"inputs": [1, 2, 3, 4]}', headers=headers)
    assert_error(r, 415, "unsupported_media_type")
    ok = await client.post(
        PREDICT,
        content=b'{"inputs": [1, 2, 3, 4]}',
        headers=keys.auth() | {"Content-Type": "application/json; charset=utf-8"},
    )
    assert ok.status_code == 200


# ----------------------------------------------------------------------------- 422


@pytest.mark.parametrize(
    ("path", "inputs", "loc"),
    [
        (PREDICT, {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4}, ["inputs", "petal_width"]),
        (PREDICT, {**GOOD["inputs"], "colour": "red"}, ["inputs", "colour"]),
        (PREDICT, {**GOOD["inputs"], "sepal_width": "wide"}, ["inputs", "sepal_width"]),
        (PREDICT, {**GOOD["inputs"], "sepal_width": True}, ["inputs", "sepal_width"]),
        (PREDICT, [5.1, 3.5, 1.4], ["inputs"]),
        (PREDICT, "5.1,3.5", ["inputs"]),
        (BATCH, [], ["inputs"]),
        (BATCH, [GOOD["inputs"], {**GOOD["inputs"], "sepal_width": None}], ["inputs", 1, "sepal_width"]),
        (BATCH, [[1, 2, 3, 4], [1, 2, 3]], ["inputs", 1]),
        (BATCH, [GOOD["inputs"], {**GOOD["inputs"], "petal_width": 1e300}], ["inputs", 1, "petal_width"]),
        (
            "/v1/models/credit-strict/predict",
            {"age": 30, "income": 50.0, "city": "Atlantis"},
            ["inputs", "city"],
        ),
        ("/v1/models/credit/predict", {"age": 30, "income": 50.0, "city": "x" * 2000}, ["inputs", "city"]),
    ],
    ids=[
        "missing-feature",
        "extra-feature",
        "wrong-type",
        "bool-as-number",
        "wrong-width",
        "not-a-record",
        "empty-batch",
        "null-not-allowed",
        "ragged-rows",
        "non-finite-after-cast",
        "unknown-category",
        "string-too-long",
    ],
)
async def test_422_for_schema_violations_with_located_details(
    client: httpx.AsyncClient, keys: Keys, path: str, inputs: Any, loc: list[Any]
) -> None:
    r = await client.post(path, json={"inputs": inputs}, headers=keys.auth())
    body = assert_error(r, 422, "invalid_input")
    assert loc in [d["loc"] for d in body["error"]["details"]]
    assert "x" * 100 not in r.text  # long input values are never echoed
    await assert_still_serving(client, keys)


async def test_422_for_a_body_without_inputs_or_with_extra_fields(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    body = assert_error(
        await client.post(PREDICT, json={"input": [1, 2, 3, 4]}, headers=keys.auth()), 422, "invalid_input"
    )
    assert ["inputs"] in [d["loc"] for d in body["error"]["details"]]
    body = assert_error(
        await client.post(PREDICT, json={**GOOD, "extra": 1}, headers=keys.auth()), 422, "invalid_input"
    )
    assert ["extra"] in [d["loc"] for d in body["error"]["details"]]
    assert_error(await client.post(PREDICT, json=[1, 2, 3, 4], headers=keys.auth()), 422, "invalid_input")


async def test_422_for_a_batch_over_the_row_limit_and_at_most_20_details(
    make_app: MakeApp, keys: Keys
) -> None:
    async with client_for(await make_app(request_max_rows=3)) as client:
        body = assert_error(
            await client.post(BATCH, json={"inputs": [[1, 2, 3, 4]] * 4}, headers=keys.auth()),
            422,
            "invalid_input",
        )
        assert "3" in body["error"]["message"]
        ok = await client.post(BATCH, json={"inputs": [[1, 2, 3, 4]] * 3}, headers=keys.auth())
        assert ok.status_code == 200
    async with client_for(await make_app()) as client:
        rows = [["a", "b", "c", "d"]] * 50
        body = assert_error(
            await client.post(BATCH, json={"inputs": rows}, headers=keys.auth()), 422, "invalid_input"
        )
        assert len(body["error"]["details"]) == 20


# ----------------------------------------------------------------------------- 429


async def test_429_per_key_rate_limit_with_retry_after(make_app: MakeApp, keys: Keys) -> None:
    async with client_for(await make_app(rate_limit_rps=0.01)) as client:
        assert (await client.post(PREDICT, json=GOOD, headers=keys.auth())).status_code == 200
        r = await client.post(PREDICT, json=GOOD, headers=keys.auth())
        assert_error(r, 429, "rate_limited")
        assert int(r.headers["retry-after"]) >= 1
        # another key has its own bucket
        other = await client.post(PREDICT, json=GOOD, headers=keys.auth(keys.iris))
        assert other.status_code == 200


# ----------------------------------------------------------------------------- 503 / 504 / 500


async def test_503_for_a_model_that_failed_to_load(client: httpx.AsyncClient, keys: Keys) -> None:
    r = await client.post("/v1/models/broken/predict", json=GOOD, headers=keys.auth())
    assert_error(r, 503, "model_not_ready")
    assert int(r.headers["retry-after"]) >= 1
    await assert_still_serving(client, keys)


async def test_503_for_an_unloaded_model_until_it_is_loaded_again(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    admin = keys.auth(keys.admin)
    assert (await client.post("/v2/repository/models/iris/unload", headers=admin)).status_code == 200
    assert_error(await client.post(PREDICT, json=GOOD, headers=keys.auth()), 503, "model_not_ready")
    assert (await client.post("/v2/repository/models/iris/load", headers=admin)).status_code == 200
    await assert_still_serving(client, keys)


async def test_503_while_models_are_loading_then_200(
    make_app: MakeApp, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bundlegate.registry import ModelRegistry

    release = threading.Event()
    original = ModelRegistry._load_parts

    def slow_load(self: ModelRegistry, *args: Any) -> Any:
        release.wait(timeout=30)  # a bundle that takes long to load
        return original(self, *args)

    monkeypatch.setattr(ModelRegistry, "_load_parts", slow_load)
    app = await make_app(wait=False)
    async with client_for(app) as client:
        try:
            r = await client.post(PREDICT, json=GOOD, headers=keys.auth())
            assert_error(r, 503, "model_not_ready")
            assert int(r.headers["retry-after"]) >= 1
            assert_error(await client.get("/readyz"), 503, "unavailable")
            hidden = await client.post("/v1/models/credit/predict", json=GOOD, headers=keys.auth(keys.iris))
            assert_error(hidden, 404, "not_found")
        finally:
            release.set()
        await app.loaded()
        assert (await client.get("/readyz")).status_code == 200
        await assert_still_serving(client, keys)


async def test_503_when_the_queue_is_full(make_app: MakeApp, keys: Keys) -> None:
    app = await make_app(queue_max_rows=2, batch_max_rows=1)
    slow_down(app, "iris", 0.2)
    async with client_for(app) as client:
        responses = await asyncio.gather(
            *(client.post(BATCH, json={"inputs": [[1, 2, 3, 4]]}, headers=keys.auth()) for _ in range(8))
        )
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses
    assert 503 in statuses
    full = next(r for r in responses if r.status_code == 503)
    assert_error(full, 503, "overloaded")
    assert int(full.headers["retry-after"]) >= 1


async def test_503_while_draining(make_app: MakeApp, keys: Keys) -> None:
    app = await make_app()
    async with client_for(app) as client:
        app.state.draining = True
        r = await client.post(PREDICT, json=GOOD, headers=keys.auth())
        assert_error(r, 503, "overloaded")
        assert_error(await client.get("/readyz"), 503, "unavailable")
        app.state.draining = False
        await assert_still_serving(client, keys)


async def test_504_when_inference_passes_the_deadline(make_app: MakeApp, keys: Keys) -> None:
    app = await make_app(request_timeout_ms=50)
    slow_down(app, "iris", 0.3)
    async with client_for(app) as client:
        r = await client.post(PREDICT, json=GOOD, headers=keys.auth())
        assert_error(r, 504, "deadline_exceeded")
        assert r.headers["x-model-version"] == "2"
        # the pinned version 1 is fast and still answers
        ok = await client.post("/v1/models/iris/versions/1/predict", json=GOOD, headers=keys.auth())
        assert ok.status_code == 200


async def test_500_for_an_unexpected_error_is_generic_and_logged_with_the_request_id(
    make_app: MakeApp, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    app = await make_app()
    queue = app.ctx.registry.get("iris").queue

    class Exploding:
        def predict(self, feed: Feed) -> Prediction:
            raise RuntimeError("secret internal detail /srv/model")

    original = queue.model
    queue.model = Exploding()
    async with client_for(app) as client:
        with caplog.at_level(logging.ERROR, logger="bundlegate.http"):
            r = await client.post(PREDICT, json=GOOD, headers=keys.auth() | {"X-Request-ID": "trace-500"})
        body = assert_error(r, 500, "internal")
        assert body["error"]["message"] == "internal server error"
        assert "secret" not in r.text
        assert body["request_id"] == "trace-500"
        assert any("trace-500" in rec.getMessage() and rec.exc_info for rec in caplog.records)
        queue.model = original
        await assert_still_serving(client, keys)
