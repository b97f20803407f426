"""/v2 (Open Inference Protocol) in-process: metadata, readiness, infer in both tensor layouts and the
binary tensor data extension, answers equal to /v1 and to sklearn, and the admin-only repository API.
The real tritonclient runs against a real socket in tests/test_serve_socket.py."""

from __future__ import annotations

import struct
from typing import Any

import httpx
import numpy as np
import pytest
from gateway_support import Keys

import bundle_factory as bf

IRIS_ROWS = bf.iris_model().X[::30]
INFER = "/v2/models/iris/infer"


def matrix(rows: np.ndarray, name: str = "input", datatype: str = "FP64") -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": list(rows.shape), "data": rows.ravel().tolist()}


def outputs_by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["name"]: o for o in body["outputs"]}


async def test_server_metadata_and_health_need_no_key(client: httpx.AsyncClient) -> None:
    r = await client.get("/v2")
    assert r.status_code == 200
    assert r.json()["name"] == "bundlegate"
    assert "model_repository" in r.json()["extensions"]
    assert (await client.get("/v2/health/live")).json() == {"live": True}
    assert (await client.get("/v2/health/ready")).json() == {"ready": True}


async def test_model_metadata_lists_inputs_with_datatype_and_shape(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    r = await client.get("/v2/models/iris", headers=keys.auth())
    assert r.status_code == 200
    meta = r.json()
    assert meta["name"] == "iris"
    assert meta["versions"] == ["1", "2"]
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]
    assert meta["outputs"] == [
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
    ]
    credit = (await client.get("/v2/models/credit/versions/1", headers=keys.auth())).json()
    assert credit["inputs"] == [
        {"name": "age", "datatype": "FP64", "shape": [-1, 1]},
        {"name": "income", "datatype": "FP64", "shape": [-1, 1]},
        {"name": "city", "datatype": "BYTES", "shape": [-1, 1]},
    ]
    price = (await client.get("/v2/models/price", headers=keys.auth())).json()
    assert price["outputs"] == [{"name": "value", "datatype": "FP32", "shape": [-1]}]


async def test_model_ready(client: httpx.AsyncClient, keys: Keys) -> None:
    r = await client.get("/v2/models/iris/versions/1/ready", headers=keys.auth())
    assert r.status_code == 200
    assert r.json()["ready"] is True
    assert (await client.get("/v2/models/broken/ready", headers=keys.auth())).status_code == 503


async def test_infer_matrix_equals_sklearn_and_v1(client: httpx.AsyncClient, keys: Keys) -> None:
    clf = bf.iris_model().estimator
    body = {"id": "req-7", "parameters": {"trace": True}, "inputs": [matrix(IRIS_ROWS)]}
    r = await client.post(INFER, json=body, headers=keys.auth())
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["model_name"], answer["model_version"], answer["id"]) == ("iris", "2", "req-7")
    assert answer["parameters"] == {"trace": True}
    assert r.headers["x-model-version"] == "2"
    out = outputs_by_name(answer)
    n = len(IRIS_ROWS)
    assert out["label"] == {
        "name": "label",
        "datatype": "BYTES",
        "shape": [n],
        "data": clf.predict(IRIS_ROWS).tolist(),
    }
    assert out["probabilities"]["datatype"] == "FP32"
    assert out["probabilities"]["shape"] == [n, 3]
    probabilities = np.array(out["probabilities"]["data"]).reshape(n, 3)
    assert np.allclose(probabilities, clf.predict_proba(IRIS_ROWS), atol=1e-5)
    v1 = await client.post(
        "/v1/models/iris/predict/batch", json={"inputs": IRIS_ROWS.tolist()}, headers=keys.auth()
    )
    assert v1.json()["predictions"] == out["label"]["data"]
    assert v1.json()["probabilities"] == probabilities.tolist()


async def test_infer_one_tensor_per_feature_and_nested_data(client: httpx.AsyncClient, keys: Keys) -> None:
    clf = bf.iris_model().estimator
    tensors = [
        {
            "name": f,
            "datatype": "FP32",
            "shape": [len(IRIS_ROWS), 1],
            "data": [[v] for v in IRIS_ROWS[:, j].tolist()],
        }
        for j, f in enumerate(bf.IRIS_FEATURES)
    ]
    r = await client.post(INFER, json={"inputs": tensors[::-1]}, headers=keys.auth())
    assert r.status_code == 200, r.text
    assert outputs_by_name(r.json())["label"]["data"] == clf.predict(IRIS_ROWS).tolist()
    nested = {"name": "input", "datatype": "FP64", "shape": [len(IRIS_ROWS), 4], "data": IRIS_ROWS.tolist()}
    r = await client.post(INFER, json={"inputs": [nested]}, headers=keys.auth())
    assert outputs_by_name(r.json())["label"]["data"] == clf.predict(IRIS_ROWS).tolist()


async def test_infer_mixed_model_per_feature(client: httpx.AsyncClient, keys: Keys) -> None:
    built = bf.mixed_model()
    X = built.X.iloc[:10].fillna({"age": 40.0})
    tensors = [
        {"name": "age", "datatype": "FP64", "shape": [10], "data": X["age"].tolist()},
        {"name": "income", "datatype": "FP64", "shape": [10], "data": X["income"].tolist()},
        {"name": "city", "datatype": "BYTES", "shape": [10, 1], "data": [c or None for c in X["city"]]},
    ]
    r = await client.post("/v2/models/credit/infer", json={"inputs": tensors}, headers=keys.auth())
    assert r.status_code == 200, r.text
    expected_input = X.assign(city=X["city"])
    assert outputs_by_name(r.json())["label"]["data"] == built.estimator.predict(expected_input).tolist()


async def test_a_bad_value_is_located_at_its_tensor_and_element(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    """/v2 names the tensor (by its place in ``inputs``) and the element, not /v1's record and feature."""
    tensors = [
        {"name": "city", "datatype": "BYTES", "shape": [3], "data": ["Rome", "Oslo", "Rome"]},
        {"name": "age", "datatype": "FP64", "shape": [3], "data": [30, 40, 50]},
        {"name": "income", "datatype": "FP64", "shape": [3], "data": [1.0, 2.0, "lots"]},
    ]
    r = await client.post("/v2/models/credit/infer", json={"inputs": tensors}, headers=keys.auth())
    assert r.status_code == 422, r.text
    assert [d["loc"] for d in r.json()["details"]] == [["inputs", 2, "data", 2]]


async def test_infer_regressor_value(client: httpx.AsyncClient, keys: Keys) -> None:
    built = bf.regressor_model()
    X = built.X[:5].copy()
    X[:, 2] = np.round(X[:, 2])
    r = await client.post("/v2/models/price/infer", json={"inputs": [matrix(X)]}, headers=keys.auth())
    assert r.status_code == 200, r.text
    value = outputs_by_name(r.json())["value"]
    assert value["shape"] == [5]
    assert np.allclose(value["data"], built.estimator.predict(X), rtol=1e-5)


async def test_infer_requested_outputs_only(client: httpx.AsyncClient, keys: Keys) -> None:
    body = {"inputs": [matrix(IRIS_ROWS[:2])], "outputs": [{"name": "probabilities"}]}
    r = await client.post(INFER, json=body, headers=keys.auth())
    assert [o["name"] for o in r.json()["outputs"]] == ["probabilities"]
    body["outputs"] = [{"name": "embedding"}]
    r = await client.post(INFER, json=body, headers=keys.auth())
    assert r.status_code == 422
    assert r.json()["details"][0]["loc"] == ["outputs", 0, "name"]


def binary_body(tensors: list[tuple[str, str, list[int], bytes]]) -> tuple[bytes, int]:
    header = {
        "inputs": [
            {"name": n, "datatype": d, "shape": s, "parameters": {"binary_data_size": len(raw)}}
            for n, d, s, raw in tensors
        ]
    }
    import json

    head = json.dumps(header).encode()
    return head + b"".join(raw for *_, raw in tensors), len(head)


async def test_infer_binary_tensor_data(client: httpx.AsyncClient, keys: Keys) -> None:
    clf = bf.iris_model().estimator
    rows = IRIS_ROWS.astype(np.float32)
    body, n = binary_body([("input", "FP32", list(rows.shape), rows.tobytes())])
    headers = keys.auth() | {"Inference-Header-Content-Length": str(n)}
    r = await client.post(INFER, content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert outputs_by_name(r.json())["label"]["data"] == clf.predict(rows.astype(np.float64)).tolist()

    cities = b"".join(struct.pack("<I", len(c)) + c for c in (b"Rome", b"Berlin"))
    body, n = binary_body(
        [
            ("age", "FP64", [2], np.array([30.0, 50.0]).tobytes()),
            ("income", "FP64", [2], np.array([60.0, 40.0]).tobytes()),
            ("city", "BYTES", [2], cities),
        ]
    )
    r = await client.post(
        "/v2/models/credit/infer",
        content=body,
        headers=keys.auth() | {"Inference-Header-Content-Length": str(n)},
    )
    assert r.status_code == 200, r.text
    assert len(outputs_by_name(r.json())["label"]["data"]) == 2


@pytest.mark.parametrize(
    ("tensors", "loc"),
    [
        ([{"name": "input", "datatype": "FP64", "shape": [1, 3], "data": [1, 2, 3]}], ["inputs", 0, "shape"]),
        (
            [{"name": "input", "datatype": "FP64", "shape": [2, 4], "data": [1, 2, 3, 4]}],
            ["inputs", 0, "data"],
        ),
        (
            [{"name": "input", "datatype": "BYTES", "shape": [1, 4], "data": ["a"] * 4}],
            ["inputs", 0, "datatype"],
        ),
        ([{"name": "input", "shape": [1, 4], "data": [1, 2, 3, 4]}], ["inputs", 0, "datatype"]),
        ([], ["inputs"]),
        (
            [{"name": "input", "datatype": "FP64", "shape": [1, 4], "data": [1, 2, "x", 4]}],
            ["inputs", 0, "data", 2],
        ),
    ],
)
async def test_infer_422_with_locations(
    client: httpx.AsyncClient, keys: Keys, tensors: list[Any], loc: list[Any]
) -> None:
    r = await client.post(INFER, json={"inputs": tensors}, headers=keys.auth())
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid_input"
    assert loc in [d["loc"] for d in r.json()["details"]]
    ok = await client.post(INFER, json={"inputs": [matrix(IRIS_ROWS[:1])]}, headers=keys.auth())
    assert ok.status_code == 200


async def test_infer_without_content_type_is_json(client: httpx.AsyncClient, keys: Keys) -> None:
    import json

    raw = json.dumps({"inputs": [matrix(IRIS_ROWS[:1])]}).encode()
    r = await client.post(INFER, content=raw, headers=keys.auth())
    assert "content-type" not in r.request.headers
    assert r.status_code == 200


async def test_repository_api_is_for_admin_keys_only(client: httpx.AsyncClient, keys: Keys) -> None:
    for key in (keys.all, keys.iris):
        for path in (
            "/v2/repository/index",
            "/v2/repository/models/iris/unload",
            "/v2/repository/models/iris/load",
        ):
            r = await client.post(path, headers=keys.auth(key))
            assert r.status_code == 404
            assert r.json()["code"] == "not_found"
    r = await client.post("/v2/repository/index", headers=keys.auth(keys.admin))
    assert r.status_code == 200
    index = {(e["name"], e["version"]): e for e in r.json()}
    assert index[("iris", "2")]["state"] == "READY"
    assert index[("broken", "1")]["state"] == "UNAVAILABLE"
    assert "does not match" in index[("broken", "1")]["reason"]
    assert "/tmp" not in r.text
    assert (
        await client.post("/v2/repository/models/nope/load", headers=keys.auth(keys.admin))
    ).status_code == 404
    r = await client.post("/v2/repository/models/price/unload", headers=keys.auth(keys.admin))
    assert r.status_code == 200
    assert (await client.get("/v2/models/price/ready", headers=keys.auth())).status_code == 503
    assert (
        await client.post("/v2/repository/models/price/load", headers=keys.auth(keys.admin))
    ).status_code == 200
    assert (await client.get("/v2/models/price/ready", headers=keys.auth())).status_code == 200
