"""/v1 in-process: predictions equal the original sklearn model's on the bundles' sample rows, in every
request shape, pinned versions, the model list and description, and the no-existence-oracle 404."""

from __future__ import annotations

import math
from typing import Any

import httpx
import numpy as np
import pytest
from gateway_support import Keys

import bundle_factory as bf

IRIS_ROWS = bf.iris_model().X[::30]  # the sample rows written to the bundle's sample.json


def iris_records() -> list[dict[str, float]]:
    return [dict(zip(bf.IRIS_FEATURES, row, strict=True)) for row in IRIS_ROWS.tolist()]


def assert_probabilities_close(got: list[list[float]], expected: np.ndarray) -> None:
    assert np.allclose(np.array(got), expected, atol=1e-5)


async def test_predict_one_record_equals_sklearn(client: httpx.AsyncClient, keys: Keys) -> None:
    clf = bf.iris_model().estimator
    for record, row in zip(iris_records(), IRIS_ROWS, strict=True):
        r = await client.post("/v1/models/iris/predict", json={"inputs": record}, headers=keys.auth())
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == "iris"
        assert body["version"] == 2
        assert body["request_id"] == r.headers["x-request-id"]
        assert r.headers["x-model-version"] == "2"
        assert body["prediction"] == clf.predict([row])[0]
        expected = clf.predict_proba([row])[0]
        assert list(body["probabilities"]) == list(clf.classes_)
        assert_probabilities_close([list(body["probabilities"].values())], np.array([expected]))


async def test_predict_positional_record_for_a_numeric_model(client: httpx.AsyncClient, keys: Keys) -> None:
    clf = bf.iris_model().estimator
    row = IRIS_ROWS[1].tolist()
    r = await client.post("/v1/models/iris/predict", json={"inputs": row}, headers=keys.auth())
    assert r.status_code == 200, r.text
    assert r.json()["prediction"] == clf.predict([row])[0]


@pytest.mark.parametrize("shape", ["records", "columns", "rows"])
async def test_batch_in_every_shape_equals_sklearn(client: httpx.AsyncClient, keys: Keys, shape: str) -> None:
    clf = bf.iris_model().estimator
    records = iris_records()
    inputs: Any = {
        "records": records,
        "columns": {f: [rec[f] for rec in records] for f in bf.IRIS_FEATURES},
        "rows": IRIS_ROWS.tolist(),
    }[shape]
    r = await client.post("/v1/models/iris/predict/batch", json={"inputs": inputs}, headers=keys.auth())
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["model"], body["version"], body["request_id"]) == ("iris", 2, r.headers["x-request-id"])
    assert body["predictions"] == clf.predict(IRIS_ROWS).tolist()
    assert_probabilities_close(body["probabilities"], clf.predict_proba(IRIS_ROWS))


async def test_pinned_version_answers(client: httpx.AsyncClient, keys: Keys) -> None:
    record = iris_records()[0]
    r = await client.post("/v1/models/iris/versions/1/predict", json={"inputs": record}, headers=keys.auth())
    assert r.status_code == 200
    assert r.json()["version"] == 1
    assert r.headers["x-model-version"] == "1"
    r = await client.post(
        "/v1/models/iris/versions/1/predict/batch", json={"inputs": [record]}, headers=keys.auth()
    )
    assert (r.status_code, r.json()["version"]) == (200, 1)


async def test_mixed_model_with_missing_values_equals_sklearn(client: httpx.AsyncClient, keys: Keys) -> None:
    built = bf.mixed_model()
    X = built.X.iloc[:40]
    records = [
        {
            "age": None if math.isnan(age) else age,
            "income": income,
            "city": None if city == "" else city,
        }
        for age, income, city in X.itertuples(index=False)
    ]
    assert any(rec["age"] is None for rec in records)
    assert any(rec["city"] is None for rec in records)
    r = await client.post("/v1/models/credit/predict/batch", json={"inputs": records}, headers=keys.auth())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["predictions"] == built.estimator.predict(X).tolist()
    assert_probabilities_close(body["probabilities"], built.estimator.predict_proba(X))
    one = await client.post("/v1/models/credit/predict", json={"inputs": records[0]}, headers=keys.auth())
    assert one.json()["prediction"] == body["predictions"][0]
    assert set(one.json()["probabilities"]) == {"approve", "reject"}


async def test_regressor_answers_values_equal_to_sklearn(client: httpx.AsyncClient, keys: Keys) -> None:
    built = bf.regressor_model()
    X = built.X[:10].copy()
    X[:, 2] = np.round(X[:, 2] * 10)  # feature "n" is declared int64
    rows = [[a, b, int(n)] for a, b, n in X.tolist()]
    r = await client.post("/v1/models/price/predict/batch", json={"inputs": rows}, headers=keys.auth())
    assert r.status_code == 200, r.text
    body = r.json()
    assert "probabilities" not in body
    assert np.allclose(body["predictions"], built.estimator.predict(X), rtol=1e-5)
    one = await client.post(
        "/v1/models/price/predict",
        json={"inputs": dict(zip("abn", rows[0], strict=True))},
        headers=keys.auth(),
    )
    assert one.status_code == 200
    assert math.isclose(one.json()["prediction"], built.estimator.predict(X[:1])[0], rel_tol=1e-5)


async def test_model_list_shows_states_and_only_allowed_models(
    client: httpx.AsyncClient, keys: Keys, repo: Any
) -> None:
    r = await client.get("/v1/models", headers=keys.auth())
    assert r.status_code == 200
    models = {m["name"]: m for m in r.json()["models"]}
    assert set(models) == {"broken", "credit", "credit-strict", "iris", "price"}
    assert models["iris"]["default_version"] == 2
    assert [(v["version"], v["state"]) for v in models["iris"]["versions"]] == [(1, "loaded"), (2, "loaded")]
    broken = models["broken"]["versions"][0]
    assert broken["state"] == "failed"
    assert "does not match" in broken["error"]
    assert str(repo) not in r.text
    assert "/tmp" not in r.text

    r = await client.get("/v1/models", headers=keys.auth(keys.iris))
    assert [m["name"] for m in r.json()["models"]] == ["iris"]


async def test_model_description_has_schema_but_no_paths(
    client: httpx.AsyncClient, keys: Keys, repo: Any
) -> None:
    r = await client.get("/v1/models/credit", headers=keys.auth())
    assert r.status_code == 200
    body = r.json()
    assert body["name"] == "credit"
    assert body["default_version"] == 1
    schema = body["schema"]
    assert [i["name"] for i in schema["inputs"]] == ["age", "income", "city"]
    assert schema["inputs"][2]["categories"] == ["Berlin", "Paris", "Rome"]
    assert schema["outputs"]["label"]["classes"] == ["approve", "reject"]
    assert schema["positional_rows"] is False
    for forbidden in (str(repo), "model.onnx", "sha256", "files"):
        assert forbidden not in r.text
    failed = await client.get("/v1/models/broken", headers=keys.auth())
    assert failed.status_code == 200
    assert failed.json()["schema"] is None
    assert "/tmp" not in failed.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/models/{m}/predict"),
        ("POST", "/v1/models/{m}/predict/batch"),
        ("GET", "/v1/models/{m}"),
        ("POST", "/v2/models/{m}/infer"),
        ("GET", "/v2/models/{m}"),
    ],
)
async def test_unknown_and_not_allowed_models_get_the_same_404(
    client: httpx.AsyncClient, keys: Keys, method: str, path: str
) -> None:
    body = {"inputs": {"age": 1, "income": 2, "city": "Rome"}}
    unknown = await client.request(
        method, path.format(m="no-such-model"), json=body, headers=keys.auth(keys.iris)
    )
    hidden = await client.request(method, path.format(m="credit"), json=body, headers=keys.auth(keys.iris))
    assert unknown.status_code == hidden.status_code == 404
    a, b = unknown.json(), hidden.json()
    assert a.pop("request_id") == unknown.headers["x-request-id"]
    assert b.pop("request_id") == hidden.headers["x-request-id"]
    if path.startswith("/v2"):  # the Open Inference Protocol's error layout
        assert a == b == {"error": "model not found", "code": "not_found", "details": []}
    else:
        assert a == b == {"error": {"code": "not_found", "message": "model not found", "details": []}}
    assert "x-model-version" not in hidden.headers


@pytest.mark.parametrize("version", ["9", "0", "abc", "99999999999"])
async def test_unknown_version_is_the_same_404(client: httpx.AsyncClient, keys: Keys, version: str) -> None:
    r = await client.post(
        f"/v1/models/iris/versions/{version}/predict", json={"inputs": iris_records()[0]}, headers=keys.auth()
    )
    assert r.status_code == 404
    assert r.json()["error"]["message"] == "model not found"
