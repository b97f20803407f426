"""``GET /openapi.json``: an OpenAPI 3.1 document of this gateway, generated from the loaded bundles.

Without a key the document describes the API with templated paths (``/v1/models/{name}/predict``)
and generic bodies: it reveals no model. With a key (``Authorization: Bearer`` or ``X-API-Key``) it
adds, for every loaded or available (``--lazy``, evicted) model version the key may see, literal
paths with that version's own request and answer schemas:

- ``/v1``: single predict (a record, or a positional list for numeric models) and batch predict in
  every accepted shape (records, columns, positional rows), under the default and each pinned version;
- ``/v2``: model metadata, readiness and infer (Open Inference Protocol tensors);
- every error status with the one error body (``/v2`` lays it out as the protocol does), and the key
  scheme (bearer or ``X-API-Key``). The repository endpoints appear for admin keys only.

Feature values are bounded as the gateway checks them: numbers fit the model's tensor type, strings
``max_string_length``, closed category sets are enums; a batch holds 1 to ``request_max_rows`` rows.

The shared schemas and operation helpers are ``openapi_schemas``; one model version's schemas and
paths are ``openapi_models``.
"""

from __future__ import annotations

from typing import Any

from bundlegate import __version__
from bundlegate.http.openapi_models import model_paths
from bundlegate.http.openapi_schemas import (
    common_schemas,
    error_refs,
    error_responses,
    get,
    json_content,
    post,
    public,
    ref,
)
from bundlegate.keys import KeyRecord
from bundlegate.registry import ModelRegistry
from bundlegate.settings import Settings

_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]


def openapi_document(
    settings: Settings, registry: ModelRegistry | None, key: KeyRecord | None
) -> dict[str, Any]:
    """The document for a caller with ``key`` (None: no key presented, no model named)."""
    paths: dict[str, Any] = {}
    components: dict[str, Any] = {
        "schemas": common_schemas(),
        "responses": error_responses(),
        "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "An API key as a bearer token."},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        },
    }
    paths.update(_ops_paths())
    if key is None or registry is None:
        paths.update(_template_paths())
    else:
        for status in sorted(registry.models(), key=lambda s: s.name):
            if not key.allows(status.name):
                continue
            for v in status.versions:
                manifest = registry.manifest(status.name, v.version)  # loaded or available
                if manifest is None:
                    continue
                model_paths(paths, components["schemas"], settings, manifest, v.version == status.default)
        if key.admin:
            paths.update(_repository_paths())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "bundlegate",
            "version": __version__,
            "description": "Model-serving gateway. `/v1`: named features, single and batch; `/v2`: the "
            "Open Inference Protocol. Send an API key as `Authorization: Bearer <key>` or `X-API-Key`; "
            "this document lists the models of the key that fetched it. Classifier answers name their "
            "classes in `classes`: a single answer keys `probabilities` by class, a batch answer gives "
            "each row's probabilities in `classes` order.",
        },
        "servers": [{"url": "/"}],
        "security": _SECURITY,
        "paths": paths,
        "components": components,
    }


def _ops_paths() -> dict[str, Any]:
    status = ref("Status")
    metrics = {
        "get": {
            "summary": "Prometheus metrics",
            "tags": ["operations"],
            "security": [],
            "responses": {"200": {"description": "Text exposition", "content": {"text/plain": {}}}},
        }
    }
    return {
        "/healthz": public(get("Liveness", status, "operations", "")),
        "/readyz": public(
            get("Readiness: 200 once every bundle has loaded or failed", status, "operations", "503")
        ),
        "/metrics": metrics,
        "/v2": public(get("Server metadata", status, "v2", "")),
        "/v2/health/live": public(get("Liveness", status, "v2", "", oip=True)),
        "/v2/health/ready": public(get("Readiness", status, "v2", "503", oip=True)),
        "/v1/models": get("The models this key may see, their versions and states", status, "v1", "401 429"),
    }


def _template_paths() -> dict[str, Any]:
    any_inputs = {"type": "object", "required": ["inputs"], "properties": {"inputs": {}}}
    answer = {"type": "object", "required": ["model", "version", "request_id"]}
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    version = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}
    alias = {"name": "alias", "in": "path", "required": True, "schema": {"type": "string"}}
    paths: dict[str, Any] = {}
    for base, params in (
        ("/v1/models/{name}", [name]),
        ("/v1/models/{name}/versions/{version}", [name, version]),
        ("/v1/models/{name}/aliases/{alias}", [name, alias]),  # serving.json's aliases
    ):
        paths[base + "/predict"] = {
            "parameters": params,
            **post("Predict one record (send a key to see each model's schema)", any_inputs, answer, "v1"),
        }
        paths[base + "/predict/batch"] = {
            "parameters": params,
            **post("Predict many rows", any_inputs, answer, "v1"),
        }
    for base, params in (
        ("/v2/models/{name}", [name]),
        ("/v2/models/{name}/versions/{version}", [name, version]),
    ):
        paths[base] = {"parameters": params, **get("Model metadata", ref("ModelMetadata"), "v2", oip=True)}
        paths[base + "/infer"] = {
            "parameters": params,
            **post("Inference", ref("InferRequest"), ref("InferResponse"), "v2", oip=True),
        }
    paths["/v1/models/{name}"] = {
        "parameters": [name],
        **get("Schema, outputs and versions", ref("Status"), "v1"),
    }
    return paths


def _repository_paths() -> dict[str, Any]:
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    empty = {"type": "object"}
    paths: dict[str, Any] = {
        "/v2/repository/index": {
            "post": {
                "summary": "Every model version and its state (admin keys)",
                "tags": ["v2 repository"],
                "responses": {"200": json_content({"type": "array"}), **error_refs("401 404 429", oip=True)},
            }
        }
    }
    for action in ("load", "unload"):
        paths[f"/v2/repository/models/{{name}}/{action}"] = {
            "parameters": [name],
            "post": {
                "summary": f"{action.capitalize()} a model (admin keys)",
                "tags": ["v2 repository"],
                "responses": {"200": json_content(empty), **error_refs("401 404 429 503", oip=True)},
            },
        }
    return paths
