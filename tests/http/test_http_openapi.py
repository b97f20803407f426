"""/openapi.json and /docs in-process: the document follows the key that fetched it, and real answers of
every request shape validate against the schemas it gives for that model."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import pytest
from gateway_support import Keys

import bundle_factory as bf

IRIS_ROWS = bf.iris_model().X[::30]


def validator(document: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    """A validator for ``components/schemas/<name>`` that resolves the document's ``$ref``s."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema.Draft202012Validator(schema)


async def test_without_a_key_the_document_names_no_model(client: httpx.AsyncClient) -> None:
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    document = r.json()
    assert document["openapi"] == "3.1.0"
    assert "/v1/models/{name}/predict/batch" in document["paths"]
    for model in ("iris", "credit", "price", "broken"):
        assert f"/{model}" not in r.text
    assert set(document["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    jsonschema.Draft202012Validator.check_schema(document["components"]["schemas"]["Error"])


async def test_a_wrong_key_is_refused(client: httpx.AsyncClient) -> None:
    r = await client.get("/openapi.json", headers={"X-API-Key": "bg_not-a-key"})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthenticated"


async def test_a_key_sees_the_paths_of_its_models_only(client: httpx.AsyncClient, keys: Keys) -> None:
    paths = (await client.get("/openapi.json", headers=keys.auth(keys.iris))).json()["paths"]
    assert "/v1/models/iris/predict" in paths
    assert "/v1/models/iris/versions/1/predict/batch" in paths
    assert "/v2/models/iris/versions/2/infer" in paths
    assert not any("credit" in p or "price" in p for p in paths)
    assert not any("/repository/" in p for p in paths)  # admin keys only
    admin_paths = (await client.get("/openapi.json", headers=keys.auth(keys.admin))).json()["paths"]
    assert "/v2/repository/models/{name}/unload" in admin_paths
    assert "/v1/models/broken/predict" not in admin_paths  # failed to load: nothing to call


@pytest.mark.parametrize("shape", ["records", "columns", "rows"])
async def test_iris_requests_and_answers_match_the_document(
    client: httpx.AsyncClient, keys: Keys, shape: str
) -> None:
    document = (await client.get("/openapi.json", headers=keys.auth())).json()
    records = [dict(zip(bf.IRIS_FEATURES, row, strict=True)) for row in IRIS_ROWS.tolist()]
    inputs: Any = {
        "records": records,
        "columns": {f: [rec[f] for rec in records] for f in bf.IRIS_FEATURES},
        "rows": IRIS_ROWS.tolist(),
    }[shape]
    validator(document, "iris.v2.BatchRequest").validate({"inputs": inputs})
    r = await client.post("/v1/models/iris/predict/batch", json={"inputs": inputs}, headers=keys.auth())
    assert r.status_code == 200
    body = r.json()
    validator(document, "iris.v2.BatchAnswer").validate(body)
    assert body["classes"] == list(bf.iris_model().estimator.classes_)
    one = await client.post("/v1/models/iris/predict", json={"inputs": records[0]}, headers=keys.auth())
    validator(document, "iris.v2.PredictAnswer").validate(one.json())
    assert list(one.json()["probabilities"]) == one.json()["classes"] == body["classes"]


async def test_mixed_model_schema_follows_the_manifest(client: httpx.AsyncClient, keys: Keys) -> None:
    document = (await client.get("/openapi.json", headers=keys.auth())).json()
    schemas = document["components"]["schemas"]
    assert "credit.v1.Row" not in schemas  # positional rows only for numeric models
    record_validator = validator(document, "credit-strict.v1.Record")
    manifest = bf.mixed_model().manifest
    record: dict[str, Any] = {i.name: None if i.nullable else 1.0 for i in manifest.inputs}
    record["city"] = "Berlin"
    for spec in manifest.inputs:
        if spec.dtype == "string" and spec.categories:
            record[spec.name] = spec.categories[0]
    record_validator.validate(record)
    r = await client.post("/v1/models/credit-strict/predict", json={"inputs": record}, headers=keys.auth())
    assert r.status_code == 200, r.text
    with pytest.raises(jsonschema.ValidationError):  # a closed category set is an enum
        record_validator.validate(record | {"city": "Atlantis"})
    refused = await client.post(
        "/v1/models/credit-strict/predict",
        json={"inputs": record | {"city": "Atlantis"}},
        headers=keys.auth(),
    )
    assert refused.status_code == 422


async def test_docs_page_and_its_assets(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "http" not in page.text  # no CDN: every script and style comes from this gateway
    for asset, kind in (
        ("swagger-ui-bundle.js", "javascript"),
        ("swagger-ui.css", "css"),
        ("page.js", "javascript"),
    ):
        r = await client.get(f"/docs/{asset}")
        assert r.status_code == 200, asset
        assert kind in r.headers["content-type"]
    assert (await client.get("/docs/..%2Fpyproject.toml")).status_code == 404
    assert (await client.get("/docs/index.html")).status_code == 404
