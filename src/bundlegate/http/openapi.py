"""``GET /openapi.json``: an OpenAPI 3.1 document of this gateway, generated from the loaded bundles.

Without a key the document describes the API with templated paths (``/v1/models/{name}/predict``)
and generic bodies: it reveals no model. With a key (``Authorization: Bearer`` or ``X-API-Key``) it
adds, for every loaded model version the key may see, literal paths with that version's own request
and answer schemas:

- ``/v1``: single predict (a record, or a positional list for numeric models) and batch predict in
  every accepted shape (records, columns, positional rows), under the default and each pinned version;
- ``/v2``: model metadata, readiness and infer (Open Inference Protocol tensors);
- every error status with the one error body (``/v2`` lays it out as the protocol does), and the key
  scheme (bearer or ``X-API-Key``). The repository endpoints appear for admin keys only.

Feature values are bounded as the gateway checks them: numbers fit the model's tensor type, strings
``max_string_length``, closed category sets are enums; a batch holds 1 to ``max_batch_rows`` rows.
"""

from __future__ import annotations

from typing import Any

from bundlegate import __version__
from bundlegate.errors import BundlegateError
from bundlegate.http.errors import STATUS_BY_CODE
from bundlegate.http.tensors import tensor_metadata
from bundlegate.keys import KeyRecord
from bundlegate.manifest import InputSpec, Manifest
from bundlegate.registry import ModelRegistry
from bundlegate.settings import Settings

Schema = dict[str, Any]

_FLOAT32_MAX = 3.4e38  # a little under float32's largest finite value: every number up to it casts finite
_INT64 = (-(2**63), 2**63 - 1)
_ERROR_STATUSES = {
    "400": "Malformed JSON (NaN/Infinity literals, duplicate keys, nesting too deep).",
    "401": "Missing or unknown API key (`WWW-Authenticate: Bearer`).",
    "404": "Unknown model or version, or one this key may not see (one answer for both).",
    "413": "Body over the limit.",
    "415": "Wrong content type or content encoding.",
    "422": "Schema violation; `details` locate each problem.",
    "429": "Over this key's rate limit; retry after `Retry-After` seconds.",
    "503": "Overloaded, draining or the model is loading; retry after `Retry-After` seconds.",
    "504": "The inference deadline passed.",
}
# A model output that is not a finite number (inputs far outside the training range can overflow a
# model's arithmetic) is written as null: JSON has no NaN.
_NOT_A_NUMBER: Schema = {"type": "null", "description": "the model's output was not a finite number"}
_NUMBER: Schema = {"type": ["number", "null"]}
_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]


def openapi_document(
    settings: Settings, registry: ModelRegistry | None, key: KeyRecord | None
) -> dict[str, Any]:
    """The document for a caller with ``key`` (None: no key presented, no model named)."""
    paths: dict[str, Any] = {}
    components: dict[str, Any] = {
        "schemas": _common_schemas(),
        "responses": _error_responses(),
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
                if v.state != "loaded":
                    continue
                try:
                    manifest = registry.get(status.name, v.version).manifest
                except BundlegateError:  # unloaded between the listing and now
                    continue
                _model_paths(paths, components["schemas"], settings, manifest, v.version == status.default)
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


# --------------------------------------------------------------------------------- shared parts


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _common_schemas() -> dict[str, Schema]:
    detail = {
        "type": "object",
        "properties": {
            "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
            "msg": {"type": "string"},
            "type": {"type": "string"},
        },
    }
    code = {"type": "string", "enum": sorted(STATUS_BY_CODE)}
    tensor = {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"type": "string"},
            "data": {"type": "array"},
            "parameters": {"type": "object"},
        },
    }
    return {
        "Error": {
            "type": "object",
            "required": ["error", "request_id"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message", "details"],
                    "properties": {
                        "code": code,
                        "message": {"type": "string"},
                        "details": {"type": "array", "items": detail, "maxItems": 20},
                    },
                },
                "request_id": {"type": "string"},
            },
        },
        "OipError": {
            "type": "object",
            "required": ["error", "code", "request_id"],
            "properties": {
                "error": {"type": "string"},
                "code": code,
                "details": {"type": "array", "items": detail, "maxItems": 20},
                "request_id": {"type": "string"},
            },
        },
        "Tensor": tensor,
        "InferRequest": {
            "type": "object",
            "required": ["inputs"],
            "properties": {
                "id": {"type": "string"},
                "parameters": {"type": "object"},
                "inputs": {"type": "array", "items": _ref("Tensor"), "minItems": 1},
                "outputs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string"}},
                    },
                },
            },
        },
        "InferResponse": {
            "type": "object",
            "required": ["model_name", "model_version", "outputs"],
            "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "id": {"type": "string"},
                "parameters": {"type": "object"},
                "outputs": {"type": "array", "items": _ref("Tensor")},
            },
        },
        "TensorMetadata": {
            "type": "object",
            "required": ["name", "datatype", "shape"],
            "properties": {
                "name": {"type": "string"},
                "datatype": {"type": "string"},
                "shape": {"type": "array", "items": {"type": "integer"}},
            },
        },
        "ModelMetadata": {
            "type": "object",
            "required": ["name", "versions", "platform", "inputs", "outputs"],
            "properties": {
                "name": {"type": "string"},
                "versions": {"type": "array", "items": {"type": "string"}},
                "platform": {"type": "string"},
                "inputs": {"type": "array", "items": _ref("TensorMetadata")},
                "outputs": {"type": "array", "items": _ref("TensorMetadata")},
            },
        },
        "Status": {"type": "object"},
    }


def _error_responses() -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for protocol, schema in (("", "Error"), ("Oip", "OipError")):
        for status, text in _ERROR_STATUSES.items():
            response: dict[str, Any] = {
                "description": text,
                "content": {"application/json": {"schema": _ref(schema)}},
            }
            if status in ("429", "503"):
                response["headers"] = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}
            responses[f"{protocol}E{status}"] = response
    return responses


def _errors(statuses: str, oip: bool = False) -> dict[str, Any]:
    prefix = "OipE" if oip else "E"
    return {s: {"$ref": f"#/components/responses/{prefix}{s}"} for s in statuses.split()}


def _json(schema: Schema, description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_MODEL_ERRORS = "400 401 404 413 415 422 429 503 504"


def _post(summary: str, request: Schema, answer: Schema, tag: str, oip: bool = False) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "tags": [tag],
            "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
            "responses": {"200": _json(answer), **_errors(_MODEL_ERRORS, oip)},
        }
    }


def _get(summary: str, answer: Schema, tag: str, errors: str = "401 404 429 503", oip: bool = False) -> Any:
    return {
        "get": {
            "summary": summary,
            "tags": [tag],
            "responses": {"200": _json(answer), **_errors(errors, oip)},
        }
    }


def _public(operation: dict[str, Any]) -> dict[str, Any]:
    for op in operation.values():
        op["security"] = []
    return operation


def _ops_paths() -> dict[str, Any]:
    status = _ref("Status")
    metrics = {
        "get": {
            "summary": "Prometheus metrics",
            "tags": ["operations"],
            "security": [],
            "responses": {"200": {"description": "Text exposition", "content": {"text/plain": {}}}},
        }
    }
    return {
        "/healthz": _public(_get("Liveness", status, "operations", "")),
        "/readyz": _public(
            _get("Readiness: 200 once every bundle has loaded or failed", status, "operations", "503")
        ),
        "/metrics": metrics,
        "/v2": _public(_get("Server metadata", status, "v2", "")),
        "/v2/health/live": _public(_get("Liveness", status, "v2", "", oip=True)),
        "/v2/health/ready": _public(_get("Readiness", status, "v2", "503", oip=True)),
        "/v1/models": _get("The models this key may see, their versions and states", status, "v1", "401 429"),
    }


def _template_paths() -> dict[str, Any]:
    any_inputs = {"type": "object", "required": ["inputs"], "properties": {"inputs": {}}}
    answer = {"type": "object", "required": ["model", "version", "request_id"]}
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    version = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}
    paths: dict[str, Any] = {}
    for base, params in (
        ("/v1/models/{name}", [name]),
        ("/v1/models/{name}/versions/{version}", [name, version]),
    ):
        paths[base + "/predict"] = {
            "parameters": params,
            **_post("Predict one record (send a key to see each model's schema)", any_inputs, answer, "v1"),
        }
        paths[base + "/predict/batch"] = {
            "parameters": params,
            **_post("Predict many rows", any_inputs, answer, "v1"),
        }
    for base, params in (
        ("/v2/models/{name}", [name]),
        ("/v2/models/{name}/versions/{version}", [name, version]),
    ):
        paths[base] = {"parameters": params, **_get("Model metadata", _ref("ModelMetadata"), "v2", oip=True)}
        paths[base + "/infer"] = {
            "parameters": params,
            **_post("Inference", _ref("InferRequest"), _ref("InferResponse"), "v2", oip=True),
        }
    paths["/v1/models/{name}"] = {
        "parameters": [name],
        **_get("Schema, outputs and versions", _ref("Status"), "v1"),
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
                "responses": {"200": _json({"type": "array"}), **_errors("401 404 429", oip=True)},
            }
        }
    }
    for action in ("load", "unload"):
        paths[f"/v2/repository/models/{{name}}/{action}"] = {
            "parameters": [name],
            "post": {
                "summary": f"{action.capitalize()} a model (admin keys)",
                "tags": ["v2 repository"],
                "responses": {"200": _json(empty), **_errors("401 404 429 503", oip=True)},
            },
        }
    return paths


# --------------------------------------------------------------------------------- one model version


def _value(spec: InputSpec, tensor_dtype: str, max_string_length: int) -> Schema:
    """What one feature accepts, as the gateway checks it."""
    schema: Schema
    if spec.dtype == "string":
        schema = {"type": "string", "maxLength": max_string_length}
        if spec.categories is not None and not spec.allow_unknown:
            schema = {"enum": [str(c) for c in spec.categories]}
    elif spec.dtype == "bool":
        schema = {"type": "boolean"}
    elif spec.dtype == "int64" or tensor_dtype == "int64":
        lo, hi = _INT64 if tensor_dtype == "int64" else (-(2**53), 2**53)
        schema = {"type": "integer", "minimum": lo, "maximum": hi}
    else:
        bound = _FLOAT32_MAX if tensor_dtype == "float32" else None
        schema = {"type": "number"}
        if bound is not None:
            schema |= {"minimum": -bound, "maximum": bound}
    if spec.nullable and spec.dtype in ("string", "float32", "float64") and tensor_dtype != "int64":
        schema = {"anyOf": [schema, {"type": "null"}]}
    return schema


def _tensor_dtypes(manifest: Manifest) -> dict[str, str]:
    found = {f: t.dtype for t in manifest.onnx_inputs for f in t.features}
    return {i.name: found.get(i.name, i.dtype) for i in manifest.inputs}


def _model_paths(
    paths: dict[str, Any], schemas: dict[str, Schema], settings: Settings, manifest: Manifest, default: bool
) -> None:
    name, version = manifest.name, manifest.version
    prefix = f"{name}.v{version}."
    dtypes = _tensor_dtypes(manifest)
    values = {i.name: _value(i, dtypes[i.name], settings.max_string_length) for i in manifest.inputs}
    names = list(values)
    max_rows = settings.max_batch_rows
    record = {"type": "object", "properties": values, "required": names, "additionalProperties": False}
    schemas[prefix + "Record"] = record
    numeric = all(i.dtype in ("float32", "float64", "int64") for i in manifest.inputs)
    one: list[Schema] = [_ref(prefix + "Record")]
    many: list[Schema] = [
        {"type": "array", "items": _ref(prefix + "Record"), "minItems": 1, "maxItems": max_rows}
    ]
    if numeric:
        row = {
            "type": "array",
            "prefixItems": [values[n] for n in names],
            "items": False,
            "minItems": len(names),
            "maxItems": len(names),
        }
        schemas[prefix + "Row"] = row
        one.append(_ref(prefix + "Row"))
        many.append({"type": "array", "items": _ref(prefix + "Row"), "minItems": 1, "maxItems": max_rows})
    columns = {
        "type": "object",
        "properties": {
            n: {"type": "array", "items": v, "minItems": 1, "maxItems": max_rows} for n, v in values.items()
        },
        "required": names,
        "additionalProperties": False,
        "description": "Columns: one array per feature, all of the same length.",
    }
    schemas[prefix + "Columns"] = columns
    many.append(_ref(prefix + "Columns"))
    schemas[prefix + "PredictRequest"] = _body(one[0] if len(one) == 1 else {"anyOf": one})
    schemas[prefix + "BatchRequest"] = _body({"anyOf": many})
    single, batch = _answers(manifest)
    schemas[prefix + "PredictAnswer"] = single
    schemas[prefix + "BatchAnswer"] = batch
    schemas[prefix + "InferRequest"] = _infer_request(manifest)

    bases = [f"/v1/models/{name}/versions/{version}"] + ([f"/v1/models/{name}"] if default else [])
    for base in bases:
        paths[base + "/predict"] = _post(
            f"{name} v{version}: predict one record",
            _ref(prefix + "PredictRequest"),
            _ref(prefix + "PredictAnswer"),
            f"{name}",
        )
        paths[base + "/predict/batch"] = _post(
            f"{name} v{version}: predict many rows (records, columns or positional rows)",
            _ref(prefix + "BatchRequest"),
            _ref(prefix + "BatchAnswer"),
            f"{name}",
        )
    if default:
        paths[f"/v1/models/{name}"] = _get(f"{name}: schema, outputs and versions", _ref("Status"), name)
    for base in [f"/v2/models/{name}/versions/{version}"] + ([f"/v2/models/{name}"] if default else []):
        paths[base] = _get(f"{name} v{version}: metadata (OIP)", _ref("ModelMetadata"), name, oip=True)
        paths[base + "/ready"] = _get(f"{name} v{version}: ready (OIP)", _ref("Status"), name, oip=True)
        paths[base + "/infer"] = _post(
            f"{name} v{version}: inference (Open Inference Protocol)",
            _ref(prefix + "InferRequest"),
            _ref("InferResponse"),
            name,
            oip=True,
        )


def _body(inputs: Schema) -> Schema:
    return {
        "type": "object",
        "required": ["inputs"],
        "properties": {"inputs": inputs},
        "additionalProperties": False,
    }


def _answers(manifest: Manifest) -> tuple[Schema, Schema]:
    head: dict[str, Schema] = {
        "model": {"const": manifest.name},
        "version": {"const": manifest.version},
        "request_id": {"type": "string"},
    }
    label = manifest.outputs.label
    single: dict[str, Schema] = dict(head)
    batch: dict[str, Schema] = dict(head)
    if label is not None:
        classes = list(label.classes)
        one_label: Schema = {"enum": classes}
        single |= {"prediction": one_label, "classes": {"const": classes}}
        batch |= {"predictions": {"type": "array", "items": one_label}, "classes": {"const": classes}}
        if manifest.outputs.probabilities is not None:
            p = {"anyOf": [{"type": "number", "minimum": 0, "maximum": 1}, _NOT_A_NUMBER]}
            keys = [str(c).lower() if isinstance(c, bool) else str(c) for c in classes]
            single["probabilities"] = {
                "type": "object",
                "properties": {k: p for k in keys},
                "required": keys,
                "additionalProperties": False,
            }
            n = len(classes)
            row = {"type": "array", "items": p, "minItems": n, "maxItems": n}
            batch["probabilities"] = {"type": "array", "items": row}
    else:
        targets = manifest.outputs.value.targets if manifest.outputs.value is not None else None
        if targets:
            single |= {
                "prediction": {
                    "type": "object",
                    "properties": {t: _NUMBER for t in targets},
                    "required": list(targets),
                },
                "targets": {"const": list(targets)},
            }
            row = {"type": "array", "items": _NUMBER, "minItems": len(targets), "maxItems": len(targets)}
            batch |= {"predictions": {"type": "array", "items": row}, "targets": {"const": list(targets)}}
        else:
            value: Schema = {"anyOf": [_NUMBER, {"type": "array", "items": _NUMBER}]}
            single["prediction"] = value
            batch["predictions"] = {"type": "array", "items": value}
    required = ["model", "version", "request_id"]
    return (
        {"type": "object", "properties": single, "required": [*required, "prediction"]},
        {"type": "object", "properties": batch, "required": [*required, "predictions"]},
    )


def _infer_request(manifest: Manifest) -> Schema:
    inputs, _ = tensor_metadata(manifest)
    tensors: list[Schema] = []
    for meta in inputs:
        tensors.append(
            {
                "type": "object",
                "required": ["name", "shape", "datatype", "data"],
                "properties": {
                    "name": {"const": meta["name"]},
                    "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}, "maxItems": 2},
                    "datatype": {"const": meta["datatype"]},
                    "data": {"type": "array"},
                },
            }
        )
    return {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "inputs": {"type": "array", "items": {"anyOf": tensors}, "minItems": 1},
            "outputs": {
                "type": "array",
                "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
            },
        },
    }
